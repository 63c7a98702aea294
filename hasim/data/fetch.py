"""Fetch and verify the third-party data files listed in ``hasim/data/manifest.json``.

Each manifest entry names a file by its path in the mirror (``../shared``):

* ``traces/X``       -> ``traces_dir()/X``             (``$HASIM_TRACES_DIR``)
* ``measurements/X`` -> ``data_dir()/measurements/X``  (``$HASIM_DATA_DIR``)
* ``validation/X``   -> ``data_dir()/validation/X``    (``$HASIM_DATA_DIR``)

A file is copied from a mirror (``mirror=`` or ``$HASIM_MIRROR``) or downloaded from its
upstream ``url``, written to a temporary file beside its destination, checked against its
sha256 and only then renamed into place, so no half-written file is ever left behind.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from hasim.errors import HasimError, InputError
from hasim.paths import data_dir as default_data_dir
from hasim.paths import traces_dir as default_traces_dir

MANIFEST_PATH = Path(__file__).resolve().parent / "manifest.json"
MIRROR_ENV = "HASIM_MIRROR"
TOP_LEVEL = ("traces", "measurements", "validation")
CHUNK = 1 << 20
USER_AGENT = "hasim-data-fetch/1"
PROGRESS_MIN_FILES = 20
"""Show a progress bar only when at least this many files are checked."""


class FetchError(HasimError):
    """One or more data files could not be fetched or verified."""


# --------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class ManifestEntry:
    """One data file: where it lives in the mirror, its checksum and where it comes from."""

    path: str
    sha256: str
    size: int
    url: str | None = None
    license: str = ""
    source: str = ""
    compressed: str | None = None
    content_sha256: str | None = None

    @property
    def top(self) -> str:
        """Top-level folder: ``traces``, ``measurements`` or ``validation``."""
        return self.path.split("/", 1)[0]

    @property
    def dataset(self) -> str:
        """Dataset key used for grouping: ``<top>/<source>``."""
        return f"{self.top}/{self.source}" if self.source not in ("", self.top) else self.top

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], origin: str = "manifest") -> ManifestEntry:
        """Build from one JSON object, checking the fields."""
        try:
            entry = cls(
                path=str(d["path"]),
                sha256=str(d["sha256"]).lower(),
                size=int(d["size"]),
                url=d.get("url"),
                license=str(d.get("license", "")),
                source=str(d.get("source", "")),
                compressed=d.get("compressed"),
                content_sha256=d.get("content_sha256"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad manifest entry {dict(d)!r}: {exc}", path=origin) from exc
        p = PurePosixPath(entry.path)
        if p.is_absolute() or ".." in p.parts or entry.top not in TOP_LEVEL or len(p.parts) < 2:
            raise InputError(
                f"bad path {entry.path!r}",
                path=origin,
                expected="a relative path under traces/, measurements/ or validation/",
            )
        if len(entry.sha256) != 64:
            raise InputError(f"{entry.path}: bad sha256 {entry.sha256!r}", path=origin)
        if entry.compressed not in (None, "gzip"):
            raise InputError(
                f"{entry.path}: unknown compression {entry.compressed!r}",
                path=origin,
                expected='"gzip" or absent',
            )
        return entry


@dataclass(frozen=True)
class Manifest:
    """The list of data files hasim knows about."""

    entries: tuple[ManifestEntry, ...]
    origin: str = "manifest"

    def select(self, only: Iterable[str] | str | None = None) -> list[ManifestEntry]:
        """Entries whose path starts with one of ``only`` (whole path components) or whose
        ``source`` equals one of them; all entries when ``only`` is empty.

        Raises :class:`InputError` for a prefix that matches nothing.
        """
        if only is None:
            return list(self.entries)
        prefixes = [only] if isinstance(only, str) else list(only)
        if not prefixes:
            return list(self.entries)
        chosen: dict[str, ManifestEntry] = {}
        for raw in prefixes:
            prefix = raw.strip().strip("/")
            hits = [
                e
                for e in self.entries
                if not prefix
                or e.path == prefix
                or e.path.startswith(prefix + "/")
                or e.source == prefix
            ]
            if not hits:
                known = ", ".join(sorted({e.dataset for e in self.entries}))
                raise InputError(
                    f"--only {raw!r} matches no file in the manifest",
                    expected=f"a path prefix such as traces, measurements, validation or one of: "
                    f"{known}",
                )
            for e in hits:
                chosen[e.path] = e
        return [e for e in self.entries if e.path in chosen]


def load_manifest(manifest: Manifest | str | Path | Mapping[str, Any] | None = None) -> Manifest:
    """Load the manifest: the packaged one by default, or a path, dict or :class:`Manifest`."""
    if isinstance(manifest, Manifest):
        return manifest
    origin = "manifest"
    if manifest is None or isinstance(manifest, str | Path):
        path = MANIFEST_PATH if manifest is None else Path(manifest)
        origin = str(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise InputError("manifest not found", path=path) from exc
        except json.JSONDecodeError as exc:
            raise InputError(
                f"invalid JSON: {exc.msg}", path=path, line=exc.lineno, column=exc.colno
            ) from exc
    else:
        data = manifest
    files = data.get("files") if isinstance(data, Mapping) else data
    if not isinstance(files, list):
        raise InputError('no "files" list', path=origin, expected='{"files": [...]}')
    entries = tuple(ManifestEntry.from_dict(d, origin) for d in files)
    seen: set[str] = set()
    for e in entries:
        if e.path in seen:
            raise InputError(f"duplicate path {e.path}", path=origin)
        seen.add(e.path)
    return Manifest(entries, origin)


# --------------------------------------------------------------------------- layout


def destination(
    entry: ManifestEntry | str,
    traces_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> Path:
    """Where a manifest path lives locally (see the module docstring for the layout)."""
    path = entry.path if isinstance(entry, ManifestEntry) else entry
    top, _, rest = path.partition("/")
    if top == "traces":
        return Path(traces_dir if traces_dir is not None else default_traces_dir()) / rest
    if top in ("measurements", "validation"):
        return Path(data_dir if data_dir is not None else default_data_dir()) / path
    raise InputError(
        f"unknown top-level folder in {path!r}", expected="traces/measurements/validation"
    )


def resolve_mirror(mirror: str | Path | None) -> Path | None:
    """The mirror directory: ``mirror`` or ``$HASIM_MIRROR``; None when neither is set."""
    if mirror is None:
        env = os.environ.get(MIRROR_ENV)
        if not env:
            return None
        mirror = env
    path = Path(mirror).expanduser()
    if not path.is_dir():
        raise InputError("mirror is not a directory", path=path, expected="a folder like ../shared")
    return path


# --------------------------------------------------------------------------- hashing


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_file(entry: ManifestEntry, path: str | Path) -> tuple[bool, str | None]:
    """Whether ``path`` holds ``entry``'s data, and its sha256 (None if it is missing).

    A gzip-stored entry also passes when its decompressed content has ``content_sha256``
    (another zlib may compress the same content to different bytes).
    """
    p = Path(path)
    if not p.is_file():
        return False, None
    actual = sha256_file(p)
    if actual == entry.sha256:
        return True, actual
    if entry.compressed == "gzip" and entry.content_sha256:
        try:
            with gzip.open(p, "rb") as f:
                content = f.read()
        except (OSError, EOFError):
            return False, actual
        return hashlib.sha256(content).hexdigest() == entry.content_sha256, actual
    return False, actual


# --------------------------------------------------------------------------- reports


@dataclass
class FileFailure:
    """A file that could not be fetched or failed verification."""

    path: str
    dest: Path
    reason: str
    expected: str | None = None
    actual: str | None = None

    def __str__(self) -> str:
        text = f"{self.path} -> {self.dest}: {self.reason}"
        if self.expected is not None:
            text += f"\n    expected sha256 {self.expected}\n    actual   sha256 {self.actual}"
        return text


@dataclass
class FetchReport:
    """What :func:`fetch` did: files fetched (and from where), skipped and failed."""

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[FileFailure] = field(default_factory=list)
    from_mirror: int = 0
    downloaded: int = 0
    bytes_written: int = 0

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def summary(self) -> str:
        """One-line summary."""
        return (
            f"{len(self.fetched)} fetched ({self.from_mirror} from mirror, {self.downloaded} "
            f"downloaded, {self.bytes_written:,} bytes), {len(self.skipped)} already present, "
            f"{len(self.failed)} failed"
        )

    def raise_on_failure(self) -> None:
        """Raise :class:`FetchError` listing the failures, if any."""
        if self.failed:
            lines = "\n".join(f"  {f}" for f in self.failed)
            raise FetchError(f"{len(self.failed)} file(s) failed:\n{lines}")


@dataclass
class VerifyReport:
    """What :func:`verify` found."""

    good: list[str] = field(default_factory=list)
    missing: list[FileFailure] = field(default_factory=list)
    bad: list[FileFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing or bad."""
        return not self.missing and not self.bad


# --------------------------------------------------------------------------- writing


class _ChecksumMismatch(Exception):
    def __init__(self, what: str, expected: str, actual: str) -> None:
        super().__init__(f"{what} checksum mismatch")
        self.expected = expected
        self.actual = actual


def _write_atomically(dest: Path, produce: Callable[[BinaryIO], None], entry: ManifestEntry) -> int:
    """Write via ``produce`` into a temp file beside ``dest``; verify; rename; return size.

    The temp file is removed on any failure (including a checksum mismatch or Ctrl-C).
    No fsync (thousands of small files): a file truncated by a power loss fails its
    sha256 and is fetched again on the next run.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            produce(f)
        good, actual = check_file(entry, tmp)
        if not good:
            raise _ChecksumMismatch("stored file", entry.sha256, actual or "")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        return dest.stat().st_size
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy_from(src: Path) -> Callable[[BinaryIO], None]:
    def produce(out: BinaryIO) -> None:
        with open(src, "rb") as f:
            shutil.copyfileobj(f, out, CHUNK)

    return produce


class _HTTPFailure(Exception):
    pass


def _download(url: str, timeout: float, retries: int) -> bytes:
    """GET ``url`` (retrying transient errors); 4xx errors are not retried."""
    last: Exception | None = None
    for attempt in range(max(1, retries)):
        if attempt:
            time.sleep(min(2.0**attempt * 0.5, 10.0))
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        except ValueError as exc:  # not a URL at all
            raise _HTTPFailure(f"bad URL {url!r}: {exc}") from exc
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            last = exc
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise _HTTPFailure(f"HTTP {exc.code} {exc.reason} for {url}") from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            last = exc
    reason = getattr(last, "reason", None) or last
    raise _HTTPFailure(f"download failed after {max(1, retries)} tries: {reason} ({url})")


def _download_producer(
    entry: ManifestEntry, timeout: float, retries: int
) -> Callable[[BinaryIO], None]:
    def produce(out: BinaryIO) -> None:
        assert entry.url is not None
        body = _download(entry.url, timeout, retries)
        if entry.compressed == "gzip":
            actual = hashlib.sha256(body).hexdigest()
            expected = entry.content_sha256
            if expected and actual != expected:
                raise _ChecksumMismatch("downloaded content", expected, actual)
            body = gzip.compress(body, compresslevel=9, mtime=0)
        out.write(body)

    return produce


# --------------------------------------------------------------------------- fetch / verify


def _progress(items: Sequence[ManifestEntry], enabled: bool, desc: str) -> Iterable[ManifestEntry]:
    if not enabled or len(items) < PROGRESS_MIN_FILES:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return items
    return tqdm(items, desc=desc, unit="file", leave=False)


def fetch_entry(
    entry: ManifestEntry,
    *,
    mirror: Path | None,
    traces_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    force: bool = False,
    timeout: float = 60.0,
    retries: int = 3,
    report: FetchReport | None = None,
) -> FetchReport:
    """Fetch one file into place (see :func:`fetch`); results are added to ``report``."""
    report = report if report is not None else FetchReport()
    dest = destination(entry, traces_dir, data_dir)
    if not force and check_file(entry, dest)[0]:
        report.skipped.append(entry.path)
        return report

    errors: list[FileFailure] = []
    src = mirror / entry.path if mirror is not None else None
    if src is not None and src.is_file():
        try:
            report.bytes_written += _write_atomically(dest, _copy_from(src), entry)
            report.fetched.append(entry.path)
            report.from_mirror += 1
            return report
        except _ChecksumMismatch as exc:
            errors.append(
                FileFailure(
                    entry.path,
                    dest,
                    f"checksum mismatch in mirror copy {src}",
                    exc.expected,
                    exc.actual,
                )
            )
        except OSError as exc:
            errors.append(FileFailure(entry.path, dest, f"copy from {src} failed: {exc}"))
    if entry.url:
        try:
            report.bytes_written += _write_atomically(
                dest, _download_producer(entry, timeout, retries), entry
            )
            report.fetched.append(entry.path)
            report.downloaded += 1
            return report
        except _ChecksumMismatch as exc:
            errors.append(
                FileFailure(
                    entry.path, dest, f"{exc} for download {entry.url}", exc.expected, exc.actual
                )
            )
        except _HTTPFailure as exc:
            errors.append(FileFailure(entry.path, dest, str(exc)))
        except OSError as exc:
            errors.append(FileFailure(entry.path, dest, f"writing {dest} failed: {exc}"))
    elif not errors:
        where = f"the mirror {mirror} has no such file" if mirror else "no mirror given"
        errors.append(
            FileFailure(
                entry.path,
                dest,
                f"no download URL (only available from a mirror) and {where}: "
                f"use --mirror DIR (a copy of ../shared) or set {MIRROR_ENV}",
            )
        )
    if src is not None and not src.is_file():
        for e in errors:
            if "mirror" not in e.reason:
                e.reason = f"not in mirror {mirror}; {e.reason}"
    report.failed.extend(errors)
    return report


def fetch(
    datasets: Iterable[str] | str | None = None,
    mirror: str | Path | None = None,
    traces_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
    *,
    manifest: Manifest | str | Path | Mapping[str, Any] | None = None,
    timeout: float = 60.0,
    retries: int = 3,
) -> FetchReport:
    """Fetch the manifest's files (or those under the ``datasets`` prefixes) into place.

    Files already present with the right sha256 are skipped unless ``force``. Others are
    copied from ``mirror`` (or ``$HASIM_MIRROR``) when it has them, else downloaded from
    their ``url``. Per-file failures are collected in the returned report (see
    :meth:`FetchReport.raise_on_failure`); bad arguments raise :class:`InputError`.
    """
    man = load_manifest(manifest)
    entries = man.select(datasets)
    mirror_dir = resolve_mirror(mirror)
    report = FetchReport()
    for entry in _progress(entries, progress, "hasim data fetch"):
        fetch_entry(
            entry,
            mirror=mirror_dir,
            traces_dir=traces_dir,
            data_dir=data_dir,
            force=force,
            timeout=timeout,
            retries=retries,
            report=report,
        )
    return report


def verify(
    datasets: Iterable[str] | str | None = None,
    traces_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    *,
    manifest: Manifest | str | Path | Mapping[str, Any] | None = None,
) -> VerifyReport:
    """Check the sha256 of every present file; list missing and bad ones."""
    man = load_manifest(manifest)
    report = VerifyReport()
    for entry in _progress(man.select(datasets), progress, "hasim data verify"):
        dest = destination(entry, traces_dir, data_dir)
        good, actual = check_file(entry, dest)
        if good:
            report.good.append(entry.path)
        elif actual is None:
            report.missing.append(FileFailure(entry.path, dest, "missing"))
        else:
            report.bad.append(
                FileFailure(entry.path, dest, "checksum mismatch", entry.sha256, actual)
            )
    return report
