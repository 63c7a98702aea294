"""``hasim data {fetch,verify,list}``: get the third-party traces and measurements.

Run as ``hasim data ...`` or ``python -m hasim.data.cli ...``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from hasim.errors import HasimError
from hasim.paths import data_dir as default_data_dir
from hasim.paths import traces_dir as default_traces_dir

from .fetch import MIRROR_ENV, ManifestEntry, destination, fetch, load_manifest, verify

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

_DESCRIPTION = """\
Fetch, verify and list the third-party data hasim uses: Azure Functions / LLM
invocation traces and public GPU-inference measurements. None of it is committed to
the repository; every file is listed with its sha256, size, license and upstream URL
in hasim/data/manifest.json.

Layout (mirrors ../shared):
  shared/traces/X        -> $HASIM_TRACES_DIR/X               (default <project>/traces)
  shared/measurements/X  -> $HASIM_DATA_DIR/measurements/X    (default <project>/data)
  shared/validation/X    -> $HASIM_DATA_DIR/validation/X      (default <project>/data)

Environment:
  HASIM_MIRROR      a local folder laid out like ../shared to copy files from
                    (same as --mirror)
  HASIM_TRACES_DIR  where trace files go (same as --traces-dir)
  HASIM_DATA_DIR    where measurements/ and validation/ go (same as --data-dir)
"""

_EPILOG = """\
examples:
  hasim data fetch --mirror ../shared          copy everything from a local mirror
  hasim data fetch --only traces               download the traces from GitHub
  hasim data fetch --only measurements/rapp-has-gpu-v100 --mirror ../shared
  hasim data verify                            re-check every file's sha256
  hasim data list                              datasets, sizes, what is present

exit status: 0 ok, 1 some file failed / is missing or bad, 2 usage error
"""

_FETCH_HELP = """\
Copy each file from the mirror (--mirror or $HASIM_MIRROR) if it has it, else
download it from its upstream URL; write it to a temporary file beside its
destination, check its sha256, then rename it into place. Files already present with
the right sha256 are skipped. DERIVED_* tables and README files have no upstream URL
and can only come from a mirror.
"""


def _add_location_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--only",
        nargs="+",
        action="extend",
        metavar="PREFIX",
        help="restrict to paths under these prefixes (e.g. traces, validation, "
        "measurements/rapp-has-gpu-v100) or dataset ids; repeatable",
    )
    p.add_argument(
        "--traces-dir",
        type=Path,
        metavar="D",
        help="destination of traces/ (default $HASIM_TRACES_DIR or <project>/traces)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="D",
        help="destination of measurements/ and validation/ "
        "(default $HASIM_DATA_DIR or <project>/data)",
    )
    p.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The ``hasim data`` argument parser."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="hasim data", description=_DESCRIPTION, epilog=_EPILOG, formatter_class=fmt
    )
    sub = parser.add_subparsers(dest="command", metavar="{fetch,verify,list}")

    p = sub.add_parser(
        "fetch",
        help="copy or download the data files, checking sha256",
        description=_FETCH_HELP + "\n" + _DESCRIPTION,
        formatter_class=fmt,
    )
    p.add_argument(
        "--mirror",
        type=Path,
        metavar="DIR",
        help=f"local folder laid out like ../shared to copy from (default ${MIRROR_ENV})",
    )
    _add_location_args(p)
    p.add_argument("--force", action="store_true", help="re-fetch files even if present and valid")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, only errors")
    p.add_argument("--timeout", type=float, default=60.0, help="download timeout in s (60)")
    p.add_argument("--retries", type=int, default=3, help="download attempts per file (3)")

    p = sub.add_parser(
        "verify",
        help="check the sha256 of every present file; list missing and bad ones",
        description="Check every data file against the manifest. Exits 1 when a file is "
        "bad, or missing (unless --allow-missing).\n\n" + _DESCRIPTION,
        formatter_class=fmt,
    )
    _add_location_args(p)
    p.add_argument(
        "--allow-missing", action="store_true", help="only check the files that are present"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="print only problems")

    p = sub.add_parser(
        "list",
        help="list datasets with file counts, sizes and presence",
        description="List the datasets of the manifest with file counts, sizes, license and "
        "how many files are present locally (present = exists with the right size; "
        "use verify to check sha256).\n\n" + _DESCRIPTION,
        formatter_class=fmt,
    )
    _add_location_args(p)
    p.add_argument("--files", action="store_true", help="list every file, not only datasets")
    return parser


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _cmd_fetch(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    report = fetch(
        datasets=args.only,
        mirror=args.mirror,
        traces_dir=args.traces_dir,
        data_dir=args.data_dir,
        force=args.force,
        progress=not args.quiet,
        manifest=args.manifest,
        timeout=args.timeout,
        retries=args.retries,
    )
    for failure in report.failed:
        print(f"FAILED {failure}", file=err)
    if not args.quiet or not report.ok:
        print(report.summary(), file=out)
    return EXIT_OK if report.ok else EXIT_FAIL


def _cmd_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    report = verify(
        datasets=args.only,
        traces_dir=args.traces_dir,
        data_dir=args.data_dir,
        progress=not args.quiet,
        manifest=args.manifest,
    )
    for failure in report.bad:
        print(f"BAD {failure}", file=err)
    if not args.allow_missing:
        for failure in report.missing:
            print(f"MISSING {failure.path} -> {failure.dest}", file=err)
    print(
        f"{len(report.good)} ok, {len(report.bad)} bad, {len(report.missing)} missing",
        file=out,
    )
    if report.missing and not args.allow_missing:
        print("fix: hasim data fetch --mirror ../shared   (or: hasim data fetch)", file=err)
    failed = bool(report.bad) or (bool(report.missing) and not args.allow_missing)
    return EXIT_FAIL if failed else EXIT_OK


def _cmd_list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    entries = load_manifest(args.manifest).select(args.only)
    print(f"traces dir: {args.traces_dir or default_traces_dir()}", file=out)
    print(f"data dir:   {args.data_dir or default_data_dir()}", file=out)
    groups: dict[str, list[tuple[ManifestEntry, bool]]] = {}
    for e in entries:
        dest = destination(e, args.traces_dir, args.data_dir)
        present = dest.is_file() and dest.stat().st_size == e.size
        groups.setdefault(e.dataset, []).append((e, present))
        if args.files:
            mark = "ok " if present else "-- "
            print(f"{mark} {_human(e.size):>10}  {e.path}  {e.url or '(mirror only)'}", file=out)
    if args.files:
        print(file=out)
    rows = [("dataset", "files", "size", "present", "no-url", "license")]
    tot_files = tot_size = tot_present = 0
    for name, items in groups.items():
        files = [e for e, _ in items]
        n_present = sum(p for _, p in items)
        size = sum(e.size for e in files)
        no_url = sum(1 for e in files if not e.url)
        licenses = sorted({e.license for e in files})
        rows.append(
            (
                name,
                str(len(files)),
                _human(size),
                f"{n_present}/{len(files)}",
                str(no_url),
                ", ".join(licenses),
            )
        )
        tot_files += len(files)
        tot_size += size
        tot_present += n_present
    rows.append(("total", str(tot_files), _human(tot_size), f"{tot_present}/{tot_files}", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, r in enumerate(rows):
        line = "  ".join(
            c.ljust(w) if j in (0, 5) else c.rjust(w)
            for j, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        print(line.rstrip(), file=out)
        if i == 0 or i == len(rows) - 2:
            print("  ".join("-" * w for w in widths), file=out)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run ``hasim data`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    commands = {"fetch": _cmd_fetch, "verify": _cmd_verify, "list": _cmd_list}
    try:
        return commands[args.command](args, sys.stdout, sys.stderr)
    except HasimError as exc:
        print(f"hasim data {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted (no partial files were left)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
