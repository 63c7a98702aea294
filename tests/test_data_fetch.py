"""hasim.data.fetch and the ``hasim data`` CLI against a tiny mirror built in tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hasim.data import fetch as fetch_mod
from hasim.data.cli import main
from hasim.data.fetch import (
    FetchError,
    Manifest,
    ManifestEntry,
    check_file,
    destination,
    fetch,
    load_manifest,
    verify,
)
from hasim.errors import InputError

FILES: dict[str, bytes] = {
    "traces/azure/demo/invocations.csv": b"HashFunction,1,2\nf1,3,4\n",
    "traces/llm/code.csv": b"TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,2\n",
    "measurements/rapp/DERIVED_flat.csv": b"model,latency\nresnet,1.5\n",
    "measurements/rapp/graph/alexnet_10.json": b'[{"latency": 3.8}]\n',
    "validation/has/result/run.csv": b"duration,status\n0.1,200\n",
}
GZ_PATH = "measurements/rapp/runtime/alexnet_1_10.json.gz"
GZ_CONTENT = b'{"latency": 2.5, "nn.conv2d": [1.0, 0.5]}\n' * 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_dict(path: str, data: bytes, url: str | None = None) -> dict[str, object]:
    return {
        "path": path,
        "sha256": sha(data),
        "size": len(data),
        "url": url,
        "license": "MIT",
        "source": (path.split("/") + [""])[1],
    }


@pytest.fixture()
def mirror(tmp_path: Path) -> Path:
    """A tiny mirror laid out like ../shared."""
    root = tmp_path / "mirror"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    gz = gzip.compress(GZ_CONTENT, compresslevel=9, mtime=0)
    (root / GZ_PATH).parent.mkdir(parents=True, exist_ok=True)
    (root / GZ_PATH).write_bytes(gz)
    return root


@pytest.fixture()
def manifest(tmp_path: Path, mirror: Path) -> Path:
    """A manifest file describing the tiny mirror (no URLs)."""
    files = [entry_dict(rel, data) for rel, data in FILES.items()]
    gz = (mirror / GZ_PATH).read_bytes()
    files.append(
        {**entry_dict(GZ_PATH, gz), "compressed": "gzip", "content_sha256": sha(GZ_CONTENT)}
    )
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"version": 1, "files": files}))
    return path


@pytest.fixture()
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Destination dirs; the env points there too so nothing lands in the repo."""
    tr, da = tmp_path / "out" / "traces", tmp_path / "out" / "data"
    monkeypatch.setenv("HASIM_TRACES_DIR", str(tr))
    monkeypatch.setenv("HASIM_DATA_DIR", str(da))
    monkeypatch.delenv("HASIM_MIRROR", raising=False)
    return tr, da


def no_part_files(root: Path) -> bool:
    return not [p for p in root.rglob("*") if p.name.endswith(".part")]


# --------------------------------------------------------------------------- manifest


def test_load_manifest_and_layout(manifest: Path, dirs: tuple[Path, Path]) -> None:
    tr, da = dirs
    man = load_manifest(manifest)
    assert len(man.entries) == len(FILES) + 1
    e = man.entries[0]
    assert destination(e, tr, da) == tr / "azure/demo/invocations.csv"
    assert destination("measurements/x/y.csv", tr, da) == da / "measurements/x/y.csv"
    assert destination("validation/has/z.csv", tr, da) == da / "validation/has/z.csv"
    # defaults come from the env (HASIM_TRACES_DIR / HASIM_DATA_DIR)
    assert destination("traces/a.csv") == tr / "a.csv"
    assert destination("validation/a.csv") == da / "validation/a.csv"


@pytest.mark.parametrize("bad", ["../etc/passwd", "/abs/x.csv", "spec/SYSTEMS.md", "traces"])
def test_manifest_rejects_bad_paths(bad: str) -> None:
    with pytest.raises(InputError, match="bad path"):
        load_manifest({"files": [entry_dict(bad, b"x")]})


def test_manifest_rejects_duplicates_and_garbage(tmp_path: Path) -> None:
    e = entry_dict("traces/a.csv", b"x")
    with pytest.raises(InputError, match="duplicate"):
        load_manifest({"files": [e, e]})
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="invalid JSON"):
        load_manifest(bad)
    with pytest.raises(InputError, match="not found"):
        load_manifest(tmp_path / "missing.json")


def test_select_prefixes(manifest: Path) -> None:
    man = load_manifest(manifest)
    assert {e.top for e in man.select(["traces"])} == {"traces"}
    assert len(man.select("traces/")) == 2
    assert len(man.select(["measurements/rapp"])) == 3
    assert len(man.select(["traces", "validation"])) == 3
    assert len(man.select("has")) == 1  # a dataset id (source) works too
    assert man.select(None) == list(man.entries)
    with pytest.raises(InputError, match="matches no file"):
        man.select(["trace"])  # whole path components only
    with pytest.raises(InputError, match="matches no file"):
        man.select(["measurements/rap"])


# --------------------------------------------------------------------------- fetch from mirror


def test_fetch_from_mirror(manifest: Path, mirror: Path, dirs: tuple[Path, Path]) -> None:
    tr, da = dirs
    report = fetch(mirror=mirror, traces_dir=tr, data_dir=da, progress=False, manifest=manifest)
    assert report.ok, report.failed
    assert len(report.fetched) == len(FILES) + 1 and report.from_mirror == len(FILES) + 1
    assert (tr / "azure/demo/invocations.csv").read_bytes() == FILES[
        "traces/azure/demo/invocations.csv"
    ]
    assert (da / "validation/has/result/run.csv").exists()
    assert gzip.decompress((da / GZ_PATH).read_bytes()) == GZ_CONTENT
    assert no_part_files(tr.parent)
    assert verify(traces_dir=tr, data_dir=da, progress=False, manifest=manifest).ok


def test_fetch_only_prefix(manifest: Path, mirror: Path, dirs: tuple[Path, Path]) -> None:
    tr, da = dirs
    report = fetch(["traces"], mirror, tr, da, progress=False, manifest=manifest)
    assert report.ok and len(report.fetched) == 2
    assert not da.exists()


def test_fetch_uses_env_mirror(
    manifest: Path, mirror: Path, dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HASIM_MIRROR", str(mirror))
    report = fetch(progress=False, manifest=manifest)  # dirs from HASIM_*_DIR
    assert report.ok and report.from_mirror == len(FILES) + 1
    assert (dirs[0] / "llm/code.csv").exists()


def test_skip_existing_and_force(manifest: Path, mirror: Path, dirs: tuple[Path, Path]) -> None:
    tr, da = dirs
    fetch(mirror=mirror, traces_dir=tr, data_dir=da, progress=False, manifest=manifest)
    target = tr / "llm/code.csv"
    before = target.stat().st_mtime_ns
    again = fetch(mirror=mirror, traces_dir=tr, data_dir=da, progress=False, manifest=manifest)
    assert again.ok and not again.fetched and len(again.skipped) == len(FILES) + 1
    assert target.stat().st_mtime_ns == before
    forced = fetch(["traces"], mirror, tr, da, force=True, progress=False, manifest=manifest)
    assert forced.ok and len(forced.fetched) == 2 and not forced.skipped


def test_refetch_corrupted_file(manifest: Path, mirror: Path, dirs: tuple[Path, Path]) -> None:
    tr, da = dirs
    fetch(mirror=mirror, traces_dir=tr, data_dir=da, progress=False, manifest=manifest)
    target = da / "measurements/rapp/graph/alexnet_10.json"
    target.write_bytes(b"corrupted")
    (tr / "llm/code.csv").unlink()
    bad = verify(traces_dir=tr, data_dir=da, progress=False, manifest=manifest)
    assert [f.path for f in bad.bad] == ["measurements/rapp/graph/alexnet_10.json"]
    assert [f.path for f in bad.missing] == ["traces/llm/code.csv"]
    assert bad.bad[0].actual == sha(b"corrupted")
    report = fetch(mirror=mirror, traces_dir=tr, data_dir=da, progress=False, manifest=manifest)
    assert sorted(report.fetched) == [
        "measurements/rapp/graph/alexnet_10.json",
        "traces/llm/code.csv",
    ]
    assert target.read_bytes() == FILES["measurements/rapp/graph/alexnet_10.json"]


def test_checksum_mismatch_in_mirror(manifest: Path, mirror: Path, dirs: tuple[Path, Path]) -> None:
    tr, da = dirs
    (mirror / "traces/llm/code.csv").write_bytes(b"tampered\n")
    report = fetch(["traces"], mirror, tr, da, progress=False, manifest=manifest)
    assert not report.ok and len(report.fetched) == 1
    (failure,) = report.failed
    assert failure.path == "traces/llm/code.csv"
    assert "checksum mismatch" in failure.reason
    assert failure.expected == sha(FILES["traces/llm/code.csv"])
    assert failure.actual == sha(b"tampered\n")
    assert failure.expected in str(failure) and failure.actual in str(failure)
    assert not (tr / "llm/code.csv").exists()
    assert no_part_files(tr)
    with pytest.raises(FetchError, match="traces/llm/code.csv"):
        report.raise_on_failure()


def test_mismatch_keeps_existing_good_file_untouched(
    manifest: Path, mirror: Path, dirs: tuple[Path, Path]
) -> None:
    tr, da = dirs
    fetch(["traces"], mirror, tr, da, progress=False, manifest=manifest)
    (mirror / "traces/llm/code.csv").write_bytes(b"tampered\n")
    report = fetch(["traces"], mirror, tr, da, force=True, progress=False, manifest=manifest)
    assert len(report.failed) == 1
    assert (tr / "llm/code.csv").read_bytes() == FILES["traces/llm/code.csv"]


def test_no_url_and_no_mirror(manifest: Path, dirs: tuple[Path, Path]) -> None:
    tr, da = dirs
    report = fetch(
        ["measurements/rapp/DERIVED_flat.csv"], None, tr, da, progress=False, manifest=manifest
    )
    (failure,) = report.failed
    assert failure.path == "measurements/rapp/DERIVED_flat.csv"
    assert "no download URL" in failure.reason and "--mirror" in failure.reason
    assert "HASIM_MIRROR" in failure.reason
    assert not (da / "measurements/rapp/DERIVED_flat.csv").exists()


def test_no_url_and_file_not_in_mirror(
    manifest: Path, mirror: Path, dirs: tuple[Path, Path]
) -> None:
    tr, da = dirs
    (mirror / "measurements/rapp/DERIVED_flat.csv").unlink()
    report = fetch(["measurements"], mirror, tr, da, progress=False, manifest=manifest)
    (failure,) = report.failed
    assert "has no such file" in failure.reason and str(mirror) in failure.reason


def test_bad_mirror_dir_is_input_error(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="mirror is not a directory"):
        fetch(mirror=tmp_path / "nope", progress=False, manifest=manifest)


def test_interrupted_copy_leaves_no_file(
    manifest: Path, mirror: Path, dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    tr, da = dirs

    def boom(src: object, dst: object, length: int = 0) -> None:
        dst.write(b"half")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch_mod.shutil, "copyfileobj", boom)
    with pytest.raises(KeyboardInterrupt):
        fetch(["traces"], mirror, tr, da, progress=False, manifest=manifest)
    assert not [p for p in tr.rglob("*") if p.is_file()]


def test_gzip_entry_accepts_other_compressor(manifest: Path, tmp_path: Path) -> None:
    """A .gz whose bytes differ (another zlib) but whose content matches still verifies."""
    entry = next(e for e in load_manifest(manifest).entries if e.compressed)
    other = tmp_path / "x.json.gz"
    other.write_bytes(gzip.compress(GZ_CONTENT, compresslevel=1, mtime=123))
    assert sha(other.read_bytes()) != entry.sha256
    assert check_file(entry, other)[0]
    other.write_bytes(gzip.compress(b"other", mtime=0))
    assert not check_file(entry, other)[0]
    other.write_bytes(b"not gzip at all")
    assert not check_file(entry, other)[0]


def test_progress_bar_path(
    mirror: Path, dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Many files: the tqdm path is taken and still fetches everything."""
    files = []
    for i in range(25):
        rel = f"traces/many/f{i}.csv"
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_bytes(b"%d\n" % i)
        files.append(entry_dict(rel, b"%d\n" % i))
    man = Manifest(tuple(ManifestEntry.from_dict(f) for f in files))
    report = fetch(mirror=mirror, traces_dir=dirs[0], data_dir=dirs[1], manifest=man)
    assert report.ok and len(report.fetched) == 25
    assert "hasim data fetch" in capsys.readouterr().err


# --------------------------------------------------------------------------- CLI


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_fetch_verify_list(
    manifest: Path, mirror: Path, dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tr, da = dirs
    loc = ["--traces-dir", str(tr), "--data-dir", str(da), "--manifest", str(manifest)]
    code, out, _ = run_cli(["list", *loc], capsys)
    assert code == 0 and "0/6" in out and "traces/azure" in out and "total" in out
    code, out, err = run_cli(["verify", *loc], capsys)
    assert code == 1 and "MISSING" in err and "6 missing" in out
    assert run_cli(["verify", "--allow-missing", *loc], capsys)[0] == 0
    code, out, err = run_cli(["fetch", "--mirror", str(mirror), "--quiet", *loc], capsys)
    assert code == 0, err
    code, out, _ = run_cli(["verify", "-q", *loc], capsys)
    assert code == 0 and "6 ok, 0 bad, 0 missing" in out
    code, out, _ = run_cli(["list", "--files", *loc], capsys)
    assert code == 0 and "6/6" in out and "(mirror only)" in out
    (tr / "llm/code.csv").write_bytes(b"bad")
    code, _, err = run_cli(["verify", "--only", "traces", *loc], capsys)
    assert code == 1 and "BAD traces/llm/code.csv" in err


def test_cli_fetch_failure_exit_1(
    manifest: Path, dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    tr, da = dirs
    code, out, err = run_cli(
        [
            "fetch",
            "--only",
            "measurements",
            "-q",
            "--traces-dir",
            str(tr),
            "--data-dir",
            str(da),
            "--manifest",
            str(manifest),
        ],
        capsys,
    )
    assert code == 1
    assert "FAILED measurements/rapp/DERIVED_flat.csv" in err and "--mirror" in err
    assert "failed" in out


def test_cli_usage_errors(manifest: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli([], capsys)[0] == 2
    assert run_cli(["frobnicate"], capsys)[0] == 2
    assert run_cli(["fetch", "--bogus"], capsys)[0] == 2
    code, _, err = run_cli(["list", "--only", "nosuch", "--manifest", str(manifest)], capsys)
    assert code == 2 and "matches no file" in err
    code, _, err = run_cli(
        ["fetch", "--mirror", "/nonexistent/mirror", "--manifest", str(manifest)], capsys
    )
    assert code == 2 and "mirror is not a directory" in err


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for word in ("HASIM_MIRROR", "HASIM_TRACES_DIR", "HASIM_DATA_DIR", "fetch", "verify"):
        assert word in out
    code, out, _ = run_cli(["fetch", "--help"], capsys)
    assert code == 0 and "--mirror" in out and "--only" in out and "sha256" in out


def test_packaged_manifest_loads() -> None:
    man = load_manifest()
    assert len(man.entries) > 3000
    assert {e.top for e in man.entries} == {"traces", "measurements", "validation"}
    assert "traces/README.md" not in {e.path for e in man.entries}


def test_copy_preserves_nothing_from_mirror_permissions(
    manifest: Path, mirror: Path, dirs: tuple[Path, Path]
) -> None:
    """Read-only mirror files become normal, writable files."""
    for p in mirror.rglob("*"):
        if p.is_file():
            p.chmod(0o444)
    tr, da = dirs
    assert fetch(mirror=mirror, traces_dir=tr, data_dir=da, progress=False, manifest=manifest).ok
    assert (tr / "llm/code.csv").stat().st_mode & 0o200
    shutil.rmtree(tr)
