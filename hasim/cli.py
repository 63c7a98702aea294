"""``hasim``: the command line.

hasim run [OVERRIDES...]       simulate (Hydra app; -m for sweeps; --help for configs)
hasim data fetch|verify|list   fill and check the trace and data directories
hasim perf train|evaluate|train-operators|evaluate-operators   the latency predictors
hasim validate has-gpu         real vs simulated HAS-GPU/FaST-GShare/KServe runs
hasim validate fit             calibrate the free system parameters on those runs
hasim report DIR               collect runs, draw figures
"""

from __future__ import annotations

import sys

USAGE = """usage: hasim <command> [args]

commands:
  run [key=value ...]     run a simulation (Hydra overrides; `hasim run --help` lists
                          the config groups and options; `hasim run -m ...` sweeps)
  data fetch|verify|list  download or copy (--mirror DIR) the traces and measurements,
                          verifying sha256; `hasim data --help`
  validate has-gpu        replay HAS-GPU's validation workload per real run and print
                          real vs simulated figures (`hasim validate has-gpu --help`)
  validate fit            fit the free system parameters to the real runs, one set for
                          all (`hasim validate fit --help`; written to conf/calibration/)
  report DIR              collect every run below DIR into runs.parquet and draw the
                          cost/SLO frontier, latency CDFs, allocation timeline, actions
  perf train|evaluate     train the RaPP latency predictor / evaluate it with the paper's
                          protocols (random, unseen-config, unseen-model); `hasim perf --help`
  perf train-operators|evaluate-operators
                          the per-operator (kernel) model used by sim.fidelity=kernel

examples:
  hasim run                                        # the offline default
  hasim run workload=poisson workload.rate=20 perf=synthetic autoscaler.pods=2
  hasim data fetch --mirror ../shared && hasim run experiment=azure500
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "--version":
        from hasim import __version__

        print(__version__)
        return 0
    if cmd == "run":
        from hasim.sim.app import app

        sys.argv = ["hasim run", *rest]
        app()
        return 0
    if cmd == "data":
        from hasim.data.cli import main as data_main

        return data_main(rest)
    if cmd == "validate":
        if rest[:1] == ["fit"]:
            from hasim.analysis.fit import main as fit_main

            return fit_main(rest[1:])
        from hasim.analysis.validate import main as validate_main

        return validate_main(rest)
    if cmd == "report":
        from hasim.analysis.report import main as report_main

        return report_main(rest)
    if cmd == "perf":
        from hasim.perf.cli import main as perf_main

        return perf_main(rest)
    print(f"hasim: unknown command {cmd!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
