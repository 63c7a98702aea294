"""The packaged manifest against the real mirror ../shared (skipped when it is absent)."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import pytest

from hasim.data import build_manifest as bm
from hasim.data.cli import main
from hasim.data.fetch import MANIFEST_PATH, load_manifest

SHARED = Path(__file__).resolve().parents[2] / "shared"
needs_shared = pytest.mark.skipif(not (SHARED / "traces").is_dir(), reason=f"no mirror at {SHARED}")
NO_URL = {
    "measurements/README.md",
    "measurements/DERIVED_unified_latency.csv",
    "measurements/has-gpu-bert-table/README.md",
    "measurements/has-gpu-bert-table/bert_qt.csv",
    "measurements/rapp-has-gpu-v100/DERIVED_graph_features_flat.csv",
    "measurements/rapp-has-gpu-v100/DERIVED_runtime_features_latency_flat.csv",
    "validation/has-gpu-v100/README.md",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_urls_are_well_formed() -> None:
    """Every URL is a raw GitHub URL pinned to a full commit; only known files lack one."""
    entries = load_manifest().entries
    raw = re.compile(r"^https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+$")
    assert {e.path for e in entries if e.url is None} == NO_URL
    for e in entries:
        assert e.license and e.source, e.path
        if e.url is not None:
            assert raw.match(e.url), e.url
        if e.path.endswith(".gz"):
            assert e.compressed == "gzip" and e.content_sha256, e.path
            assert e.url is not None and not e.url.endswith(".gz")
        else:
            assert e.compressed is None
    by_path = {e.path: e for e in entries}
    prefix = "https://raw.githubusercontent.com/"
    assert by_path[
        "traces/azure_functions_2019/invitro_500fn_minutes480-959/invocations.csv"
    ].url == (
        prefix + "vhive-serverless/invitro/163911a85008446394bb3d7f2ae4695763ad6c05/"
        "data/traces/500/invocations.csv"
    )
    assert by_path["measurements/rapp-has-gpu-v100/runtime_features/alexnet_1_10.json.gz"].url == (
        prefix + "KontonGu/RaPP/600348c1e0e16ab57eba0ba8938528985442495e/"
        "data/runtime_features/alexnet_1_10.json"
    )
    assert by_path[
        "measurements/fastgshare-autoscaler-qps/internal/profiling/data/a100_mig.csv"
    ].url == (
        prefix + "ishworgiri1999/FaST-GShare-Autoscaler/3951ff87b991595c72bcb537ade40645064bfa1f/"
        "internal/profiling/data/a100_mig.csv"
    )
    assert by_path["validation/has-gpu-v100/client/rps.json"].url == (
        prefix + "KontonGu/HAS-GPU/fe7105e5656aa36bbc86433e436aaaf4b691f32b/"
        "validation/client/rps.json"
    )


def test_build_manifest_rules_on_fake_mirror(tmp_path: Path) -> None:
    """Rules map paths; a file that no rule covers is an error, not a guessed URL."""
    for top in bm.TOP_LEVEL:
        (tmp_path / top).mkdir()
    f = tmp_path / "traces/azure_llm_inference_2023/AzureLLMInferenceTrace_code.csv"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"TIMESTAMP\n")
    digest = hashlib.sha256(b"TIMESTAMP\n").hexdigest()
    (tmp_path / "traces/README.md").write_text(f"excluded; lists {digest}\n")
    man = bm.build_manifest(tmp_path)
    (entry,) = man["files"]  # type: ignore[misc]
    assert entry["url"].endswith(
        "/Azure/AzurePublicDataset/"  # type: ignore[index]
        "790921015d50dd6aae7f7e47f39ba0e235ad6b08/data/"
        "AzureLLMInferenceTrace_code.csv"
    )
    (tmp_path / "traces/README.md").write_text("lists nothing\n")
    with pytest.raises(ValueError, match="not listed"):
        bm.build_manifest(tmp_path)
    (tmp_path / "traces/README.md").unlink()
    (tmp_path / "measurements/unknown-set").mkdir()
    (tmp_path / "measurements/unknown-set/x.csv").write_bytes(b"x")
    with pytest.raises(ValueError, match="no URL rule"):
        bm.build_manifest(tmp_path)


@needs_shared
def test_manifest_matches_shared() -> None:
    """Every manifest file exists in ../shared with its size; traces + a sample by sha256."""
    entries = load_manifest().entries
    for e in entries:
        p = SHARED / e.path
        assert p.is_file(), f"{e.path} is in the manifest but not in {SHARED}"
        assert p.stat().st_size == e.size, e.path
    rng = random.Random(20240501)
    sample = [e for e in entries if e.top == "traces"] + rng.sample(list(entries), 150)
    for e in sample:
        assert sha256(SHARED / e.path) == e.sha256, e.path


@needs_shared
def test_shared_files_are_all_in_manifest() -> None:
    listed = {e.path for e in load_manifest().entries}
    on_disk = set(bm.iter_mirror_files(SHARED))
    assert on_disk == listed


@needs_shared
def test_committed_manifest_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "manifest.json"
    assert bm.main(["--shared", str(SHARED), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == MANIFEST_PATH.read_text(encoding="utf-8")


@needs_shared
def test_fetch_only_traces_from_shared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tr, da = tmp_path / "traces", tmp_path / "data"
    args = ["--only", "traces", "--traces-dir", str(tr), "--data-dir", str(da)]
    assert main(["fetch", "--mirror", str(SHARED), "--quiet", *args]) == 0
    assert main(["verify", "-q", *args]) == 0
    assert "14 ok, 0 bad, 0 missing" in capsys.readouterr().out
    inv = tr / "azure_functions_2019/invitro_500fn_minutes480-959/invocations.csv"
    assert inv.read_bytes() == (SHARED / "traces" / inv.relative_to(tr)).read_bytes()
    assert not da.exists()
    assert not (tr / "README.md").exists()
