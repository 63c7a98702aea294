"""Model facts come from the derived table, computed from model definitions."""

from __future__ import annotations

import json

import pytest

from hasim.cluster.build_model_facts import bert_base_params, vit_b_16_params
from hasim.cluster.models import known_models, model_facts
from hasim.errors import InputError
from hasim.perf.compact import PACKAGED_BY_GPU


def test_every_latency_model_model_has_facts() -> None:
    names = set(known_models())
    for path in PACKAGED_BY_GPU.values():
        assert set(json.loads(path.read_text())["models"]) <= names, path.name
    r = model_facts("resnet50")
    assert r.params == 25_557_032 and r.gpu_mem_mb == 1525.0  # measured pod memory
    assert r.weights_mb == pytest.approx(25_557_032 * 4 / 1e6, abs=1e-3)
    assert model_facts("regnet_y_128gf").params == 644_812_894  # no 30 M default any more
    assert model_facts("vgg16").gpu_mem_mb > model_facts("resnet18").gpu_mem_mb
    assert model_facts("resnet50", {"resnet50": 999.0}).gpu_mem_mb == 999.0


def test_formula_counts_match_the_published_architectures() -> None:
    assert bert_base_params() == 109_482_240
    assert vit_b_16_params() == 86_567_656


def test_unknown_model_is_an_error_naming_it() -> None:
    with pytest.raises(InputError, match="'no_such_net'"):
        model_facts("no_such_net")


def test_fictitious_models_only_with_a_gpu_blind_latency_model() -> None:
    import hasim

    quiet = ["workload.duration=5", "output.write=false", "output.quiet=true",
             "sim.progress=false"]  # fmt: skip
    r = hasim.run(["perf=synthetic", "workload.model=toy_net", *quiet])
    assert r.summary["completed"] > 0
    assert model_facts("toy_net", toy=True).params == 30_000_000
