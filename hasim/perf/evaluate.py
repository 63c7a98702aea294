"""Compatibility alias: the evaluation protocols live in :mod:`hasim.perf.offline.evaluate`."""

from hasim.perf.offline.evaluate import (
    PROTOCOLS,
    EvalResult,
    Split,
    check_split,
    config_fold_splits,
    config_split,
    error_report,
    evaluate,
    model_folds,
    model_split,
    out_of_fold,
    random_split,
)

__all__ = [
    "PROTOCOLS",
    "EvalResult",
    "Split",
    "check_split",
    "config_fold_splits",
    "config_split",
    "error_report",
    "evaluate",
    "model_folds",
    "model_split",
    "out_of_fold",
    "random_split",
]
