"""Regenerate ``hasim/data/manifest.json`` from a mirror laid out like ``../shared``.

Usage::

    python -m hasim.data.build_manifest --shared ../shared [--out hasim/data/manifest.json]

Every file under ``traces/``, ``measurements/`` and ``validation/`` of the mirror gets one
entry (``traces/README.md`` excepted: the project keeps its own ``traces/README.md``).
The upstream URL of each file comes from the per-dataset rules in :data:`RULES`, which
transcribe the repository, commit and path that the mirror's README files give for every
file. A file that no rule covers is an error, so a new file never gets a guessed URL.

Entries without an upstream URL (``url: null``): ``DERIVED_*`` tables and the README
files (written by the mirror's curators) and ``has-gpu-bert-table/bert_qt.csv`` (re-typed
from Go source). They can only be fetched from a mirror.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MANIFEST_PATH = Path(__file__).resolve().parent / "manifest.json"
TOP_LEVEL = ("traces", "measurements", "validation")
EXCLUDED = frozenset({"traces/README.md"})
RAW = "https://raw.githubusercontent.com"

INVITRO = "vhive-serverless/invitro"
CC_BY = "CC-BY-4.0"


@dataclass(frozen=True)
class Rule:
    """Maps mirror paths under ``prefix`` to ``<repo>@<commit>:<upstream_prefix><rest>``.

    ``prefix`` ending in ``/`` matches a folder; otherwise it matches one file exactly.
    ``repo`` None means "no upstream URL" (derived or curator-written files).
    ``gzip_stored``: the mirror stores ``<name>.gz`` for an uncompressed upstream ``<name>``.
    """

    prefix: str
    source: str
    license: str
    repo: str | None = None
    commit: str | None = None
    upstream_prefix: str = ""
    gzip_stored: bool = False

    def matches(self, path: str) -> bool:
        """Whether this rule covers ``path`` (relative to the mirror root)."""
        return path.startswith(self.prefix) if self.prefix.endswith("/") else path == self.prefix

    def url(self, path: str) -> str | None:
        """Upstream raw URL of ``path``, or None."""
        if self.repo is None or self.commit is None:
            return None
        rest = path[len(self.prefix) :] if self.prefix.endswith("/") else ""
        if self.gzip_stored:
            if not rest.endswith(".gz"):
                raise ValueError(f"{path}: rule {self.prefix} expects a .gz file")
            rest = rest[: -len(".gz")]
        upstream = self.upstream_prefix + rest
        return f"{RAW}/{self.repo}/{self.commit}/{upstream}"


_T19 = "traces/azure_functions_2019/"
_M = "measurements/"
_FGS = _M + "fastgshare-autoscaler-qps/"
_FGS_REPO = "ishworgiri1999/FaST-GShare-Autoscaler"
_RAPP = _M + "rapp-has-gpu-v100/"
_RAPP_REPO, _RAPP_COMMIT = "KontonGu/RaPP", "600348c1e0e16ab57eba0ba8938528985442495e"
# HAS-GPU: the READMEs give the short hash fe7105e; this is the full commit id.
_HASGPU_REPO, _HASGPU_COMMIT = "KontonGu/HAS-GPU", "fe7105e5656aa36bbc86433e436aaaf4b691f32b"
_MIXED = "Apache-2.0 AND MIT"

RULES: tuple[Rule, ...] = (
    # --- traces (see shared/traces/README.md) -----------------------------------------
    Rule(
        _T19 + "invitro_500fn_minutes480-959/",
        "azure_functions_2019/invitro_500fn_minutes480-959",
        CC_BY,
        INVITRO,
        "163911a85008446394bb3d7f2ae4695763ad6c05",
        "data/traces/500/",
    ),
    Rule(
        _T19 + "invitro_10fn_24h/",
        "azure_functions_2019/invitro_10fn_24h",
        CC_BY,
        INVITRO,
        "28214b7cc48bf40ff0e9794f78072a8b00775034",
        "data/traces/10/",
    ),
    Rule(
        _T19 + "invitro_legacy_1350fn_24h/",
        "azure_functions_2019/invitro_legacy_1350fn_24h",
        CC_BY,
        INVITRO,
        "b12de00fea85a68783a9a9997569c74afa0f1dde",
        "data/traces/",
    ),
    Rule(
        _T19 + "invitro_legacy_10000fn_profiles/",
        "azure_functions_2019/invitro_legacy_10000fn_profiles",
        CC_BY,
        INVITRO,
        "b12de00fea85a68783a9a9997569c74afa0f1dde",
        "data/traces/",
    ),
    Rule(
        "traces/azure_functions_2021/",
        "azure_functions_2021",
        CC_BY,
        INVITRO,
        "3d3d3cf873c3ed34e29edd898acf04b983fb810e",
        "pkg/trace/test_data/",
    ),
    Rule(
        "traces/azure_llm_inference_2023/",
        "azure_llm_inference_2023",
        CC_BY,
        "Azure/AzurePublicDataset",
        "790921015d50dd6aae7f7e47f39ba0e235ad6b08",
        "data/",
    ),
    # --- measurements (see shared/measurements/README.md) -----------------------------
    Rule(_M + "README.md", "measurements", _MIXED),
    Rule(_M + "DERIVED_unified_latency.csv", "measurements", _MIXED),
    Rule(_RAPP + "DERIVED_graph_features_flat.csv", "rapp-has-gpu-v100", "Apache-2.0"),
    Rule(_RAPP + "DERIVED_runtime_features_latency_flat.csv", "rapp-has-gpu-v100", "Apache-2.0"),
    Rule(
        _RAPP + "graph_features_all_models/",
        "rapp-has-gpu-v100",
        "Apache-2.0",
        _RAPP_REPO,
        _RAPP_COMMIT,
        "data/graph_features_all_models/",
    ),
    Rule(
        _RAPP + "runtime_features/",
        "rapp-has-gpu-v100",
        "Apache-2.0",
        _RAPP_REPO,
        _RAPP_COMMIT,
        "data/runtime_features/",
        gzip_stored=True,
    ),
    Rule(
        _RAPP + "op_runtime_features_all_models/",
        "rapp-has-gpu-v100",
        "Apache-2.0",
        _RAPP_REPO,
        _RAPP_COMMIT,
        "data/op_runtime_features_all_models/",
        gzip_stored=True,
    ),
    *(
        Rule(
            _FGS + "internal/profiling/data/" + name,
            "fastgshare-autoscaler-qps",
            "Apache-2.0",
            _FGS_REPO,
            commit,
            "internal/profiling/data/" + name,
        )
        for name, commit in (
            ("a100.csv", "96721edc44dc3db5d0bb48b8298a14506289e80f"),
            ("v100.csv", "96721edc44dc3db5d0bb48b8298a14506289e80f"),
            ("a100_mig.csv", "3951ff87b991595c72bcb537ade40645064bfa1f"),
            ("rtx2080ti.csv", "4c5ca1c4ac23850fcf39ed8d505f8c2df8102053"),
            ("t1000.csv", "b96a2a46faf68a53a269b6d98fc931094dc4e64b"),
        )
    ),
    Rule(
        _FGS + "profiling/",
        "fastgshare-autoscaler-qps",
        "Apache-2.0",
        _FGS_REPO,
        "108a69033295272aed2bfcde0b5a080c9befa386",
        "profiling/",
    ),
    Rule(
        _M + "parvagpu-a100-mig-mps/",
        "parvagpu-a100-mig-mps",
        "MIT",
        "MunQ-Lee/ParvaGPU_SC24",
        "5f3de1e18582b4c81896a1c3eb0e2915238dfee6",
    ),
    # refs/pull/10/head; the commit is reachable in the base repository.
    Rule(
        _M + "migprofiler-a100-mig/",
        "migprofiler-a100-mig",
        "MIT",
        "HuaizhengZhang/MIGProfiler",
        "bd5f2d0f925e7b92f0b879ad280cd334a0989c8d",
    ),
    Rule(
        _M + "vidur-llm-operator-profiles/",
        "vidur-llm-operator-profiles",
        "MIT",
        "microsoft/vidur",
        "7d47513363ec447a741ac5e47241580b47724fbf",
    ),
    Rule(
        _M + "orion-v100-kernel-profiles/",
        "orion-v100-kernel-profiles",
        "MIT",
        "eth-easl/orion",
        "aded65dda4b5e6104133bec31f54f170315df217",
    ),
    # Re-typed from internal/controller/tmp_database.go: no upstream file.
    Rule(_M + "has-gpu-bert-table/", "has-gpu-bert-table", "Apache-2.0"),
    # --- validation (see shared/validation/has-gpu-v100/README.md) --------------------
    Rule("validation/has-gpu-v100/README.md", "has-gpu-v100", "Apache-2.0"),
    Rule(
        "validation/has-gpu-v100/",
        "has-gpu-v100",
        "Apache-2.0",
        _HASGPU_REPO,
        _HASGPU_COMMIT,
        "validation/",
    ),
)


def rule_for(path: str) -> Rule:
    """The most specific rule covering ``path``; ``ValueError`` when none does."""
    hits = [r for r in RULES if r.matches(path)]
    if not hits:
        raise ValueError(f"{path}: no URL rule covers this file; add one to RULES")
    # Exact-file rules win over folder rules; then the longest folder prefix.
    return max(hits, key=lambda r: (not r.prefix.endswith("/"), len(r.prefix)))


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def iter_mirror_files(shared: Path) -> Iterable[str]:
    """Relative POSIX paths of the files to publish, sorted."""
    for top in TOP_LEVEL:
        root = shared / top
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory (is --shared the mirror root?)")
        for p in sorted(root.rglob("*")):
            if p.is_file():
                rel = p.relative_to(shared).as_posix()
                if rel not in EXCLUDED:
                    yield rel


def build_entry(shared: Path, rel: str) -> dict[str, object]:
    """Manifest entry for one mirror file."""
    rule = rule_for(rel)
    data = (shared / rel).read_bytes()
    url = rule.url(rel)
    if url is None and not (
        rel.rsplit("/", 1)[-1].startswith("DERIVED_")
        or rel.endswith("README.md")
        or rule.source == "has-gpu-bert-table"
    ):
        raise ValueError(f"{rel}: only DERIVED_*, README.md and re-typed files may lack a URL")
    entry: dict[str, object] = {
        "path": rel,
        "sha256": sha256_bytes(data),
        "size": len(data),
        "url": url,
        "license": rule.license,
        "source": rule.source,
    }
    if rule.gzip_stored:
        content = gzip.decompress(data)
        entry["compressed"] = "gzip"
        entry["content_sha256"] = sha256_bytes(content)
    return entry


_SHA_RE = re.compile(r"\b[0-9a-f]{64}\b")


def check_readme_hashes(shared: Path, entries: list[dict[str, object]]) -> None:
    """Each trace file's sha256 must appear in ``traces/README.md`` (it lists them all)."""
    readme = shared / "traces" / "README.md"
    if not readme.exists():
        return
    listed = set(_SHA_RE.findall(readme.read_text(encoding="utf-8")))
    for e in entries:
        if str(e["path"]).startswith("traces/") and e["sha256"] not in listed:
            raise ValueError(f"{e['path']}: sha256 {e['sha256']} is not listed in {readme}")


def build_manifest(shared: Path) -> dict[str, object]:
    """The manifest (as a dict) for the mirror at ``shared``."""
    shared = Path(shared)
    entries = [build_entry(shared, rel) for rel in iter_mirror_files(shared)]
    check_readme_hashes(shared, entries)
    return {
        "version": 1,
        "generated_by": "python -m hasim.data.build_manifest --shared ../shared",
        "layout": {
            "traces/": "$HASIM_TRACES_DIR (default <project>/traces)",
            "measurements/": "$HASIM_DATA_DIR/measurements (default <project>/data)",
            "validation/": "$HASIM_DATA_DIR/validation (default <project>/data)",
        },
        "notes": (
            "url null: DERIVED_* tables, README.md files and has-gpu-bert-table (mirror only). "
            "compressed=gzip: url is the uncompressed upstream file (sha256 content_sha256); "
            "it is stored gzip-compressed (level 9, mtime 0), whose bytes have sha256 sha256."
        ),
        "files": entries,
    }


def dumps_manifest(manifest: dict[str, object]) -> str:
    """Compact JSON: header keys indented, one file entry per line."""
    head = {k: v for k, v in manifest.items() if k != "files"}
    lines = ["{"]
    for k, v in head.items():
        lines.append(f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)},")
    lines.append('  "files": [')
    files = manifest["files"]
    assert isinstance(files, list)
    rows = ["    " + json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in files]
    lines.append(",\n".join(rows))
    lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m hasim.data.build_manifest",
        description="Regenerate the data manifest (paths, sha256, sizes, upstream URLs) "
        "from a mirror laid out like ../shared.",
    )
    parser.add_argument("--shared", type=Path, required=True, help="mirror root (../shared)")
    parser.add_argument("--out", type=Path, default=MANIFEST_PATH, help="output manifest path")
    parser.add_argument(
        "--check", action="store_true", help="do not write; exit 1 if --out differs"
    )
    args = parser.parse_args(argv)
    try:
        text = dumps_manifest(build_manifest(args.shared))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    n = text.count('"path":')
    print(f"wrote {args.out} ({n} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
