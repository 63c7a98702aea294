"""The download path of hasim.data.fetch against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hasim.data import fetch as fetch_mod
from hasim.data.fetch import fetch

GOOD = b"TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,1469,13\n"
JSON = b'{"latency": 12.5, "nn.dense": [0.3]}\n' * 10


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Handler(SimpleHTTPRequestHandler):
    """Static files, plus /flaky (503 once, then the file) and a request log."""

    requests: list[str] = []
    flaky_left = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).requests.append(self.path)
        if self.path == "/flaky.csv" and type(self).flaky_left > 0:
            type(self).flaky_left -= 1
            self.send_error(503, "try again")
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder); proxies are disabled and retries do not sleep."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(fetch_mod.time, "sleep", lambda s: None)
    monkeypatch.delenv("HASIM_MIRROR", raising=False)
    root = tmp_path / "www"
    root.mkdir()
    (root / "good.csv").write_bytes(GOOD)
    (root / "flaky.csv").write_bytes(GOOD)
    (root / "corrupt.csv").write_bytes(GOOD.replace(b"1469", b"9999"))
    (root / "op.json").write_bytes(JSON)
    Handler.requests = []
    Handler.flaky_left = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def manifest_for(path: str, data: bytes, url: str, **extra: object) -> dict[str, object]:
    entry = {
        "path": path,
        "sha256": sha(data),
        "size": len(data),
        "url": url,
        "license": "CC-BY-4.0",
        "source": "t",
    }
    entry.update(extra)
    return {"files": [entry]}


def run(man: dict[str, object], tmp_path: Path, **kw: object) -> fetch_mod.FetchReport:
    return fetch(
        traces_dir=tmp_path / "tr",
        data_dir=tmp_path / "da",
        progress=False,
        manifest=man,
        timeout=5,
        **kw,
    )  # type: ignore[arg-type]


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_download_success(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = server
    man = manifest_for("traces/llm/code.csv", GOOD, f"{base}/good.csv")
    report = run(man, tmp_path)
    assert report.ok, report.failed
    assert report.downloaded == 1 and report.fetched == ["traces/llm/code.csv"]
    assert (tmp_path / "tr/llm/code.csv").read_bytes() == GOOD
    again = run(man, tmp_path)
    assert again.skipped == ["traces/llm/code.csv"] and Handler.requests == ["/good.csv"]


def test_download_404_is_clear_and_not_retried(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = server
    man = manifest_for("traces/llm/missing.csv", GOOD, f"{base}/missing.csv")
    report = run(man, tmp_path, retries=3)
    (failure,) = report.failed
    assert "HTTP 404" in failure.reason and f"{base}/missing.csv" in failure.reason
    assert failure.path == "traces/llm/missing.csv"
    assert Handler.requests == ["/missing.csv"]
    assert files_under(tmp_path / "tr") == []


def test_download_corrupted_body(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = server
    man = manifest_for("traces/llm/code.csv", GOOD, f"{base}/corrupt.csv")
    report = run(man, tmp_path)
    (failure,) = report.failed
    assert "checksum mismatch" in failure.reason
    assert failure.expected == sha(GOOD)
    assert failure.actual == sha(GOOD.replace(b"1469", b"9999"))
    assert files_under(tmp_path / "tr") == []  # neither the file nor a .part temp file


def test_transient_error_is_retried(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = server
    Handler.flaky_left = 1
    man = manifest_for("traces/llm/code.csv", GOOD, f"{base}/flaky.csv")
    report = run(man, tmp_path, retries=3)
    assert report.ok and Handler.requests == ["/flaky.csv", "/flaky.csv"]
    Handler.flaky_left, Handler.requests = 5, []
    report = run(man, tmp_path, retries=2, force=True)
    assert "after 2 tries" in report.failed[0].reason and len(Handler.requests) == 2


def test_connection_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_mod.time, "sleep", lambda s: None)
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    man = manifest_for("traces/a.csv", GOOD, f"http://127.0.0.1:{port}/a.csv")
    report = run(man, tmp_path, retries=2)
    assert "download failed after 2 tries" in report.failed[0].reason
    assert files_under(tmp_path / "tr") == []


def test_download_gzip_stored_entry(server: tuple[str, Path], tmp_path: Path) -> None:
    """Upstream is uncompressed; the stored .gz must match the manifest sha256."""
    base, _ = server
    stored = gzip.compress(JSON, compresslevel=9, mtime=0)
    man = manifest_for(
        "measurements/rapp/runtime/op.json.gz",
        stored,
        f"{base}/op.json",
        compressed="gzip",
        content_sha256=sha(JSON),
    )
    report = run(man, tmp_path)
    assert report.ok, report.failed
    out = tmp_path / "da/measurements/rapp/runtime/op.json.gz"
    assert sha(out.read_bytes()) == sha(stored)
    # wrong upstream content -> content checksum mismatch, nothing stored
    man["files"][0]["content_sha256"] = sha(b"other")  # type: ignore[index]
    report = run(man, tmp_path, force=True)
    assert "downloaded content checksum mismatch" in report.failed[0].reason
    assert out.read_bytes() == stored  # the good copy was not touched


def test_mirror_without_file_falls_back_to_url(server: tuple[str, Path], tmp_path: Path) -> None:
    base, _ = server
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    man = manifest_for("traces/llm/code.csv", GOOD, f"{base}/good.csv")
    report = run(man, tmp_path, mirror=mirror)
    assert report.ok and report.downloaded == 1 and report.from_mirror == 0
    man404 = manifest_for("traces/llm/x.csv", GOOD, f"{base}/x.csv")
    report = run(man404, tmp_path, mirror=mirror)
    assert report.failed[0].reason.startswith(f"not in mirror {mirror}; HTTP 404")
