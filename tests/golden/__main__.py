"""Regenerate the golden records: ``python -m tests.golden [name-prefix ...]``.

Writes tests/golden/goldens.json. Do this only when a change alters results on purpose,
and say why in the commit message."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.golden.scenarios import record, scenarios

PATH = Path(__file__).with_name("goldens.json")


def main(argv: list[str]) -> int:
    old = json.loads(PATH.read_text()) if PATH.exists() else {}
    chosen = {k: v for k, v in scenarios().items() if not argv or k.startswith(tuple(argv))}
    for name, ov in chosen.items():
        t0 = time.perf_counter()
        old[name] = {"overrides": ov, **record(ov)}
        print(f"{name:32s} {time.perf_counter() - t0:6.1f} s", flush=True)
    keep = scenarios()
    out = {k: old[k] for k in sorted(old) if k in keep}
    PATH.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PATH} ({len(out)} scenarios)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
