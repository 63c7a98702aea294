"""The per-operator (kernel) latency model: training, artifact, kernel sequences, evaluation."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hasim.errors import InputError
from hasim.perf import KernelModel, default_kernel_model, load_operator_model
from hasim.perf import operators as ops
from hasim.perf.cli import main as perf_main
from hasim.perf.offline import operators as offline_ops

FAST = ops.OperatorParams(
    n_estimators=15, scale_estimators=15, num_leaves=7, min_data_in_leaf=5, num_threads=1
)
SMS = (10, 50, 100)
BATCHES = (1, 2)


def _times(model: int, batch: int, sm: int) -> dict[str, list[float]]:
    """Synthetic op times (ms): fixed launch cost plus work that scales with batch / SM."""
    rng = np.random.default_rng(1000 * model + 10 * batch + sm)
    heavy = 0.02 * (model + 1)
    out: dict[str, list[float]] = {"nn.conv2d": [], "nn.relu": [], "add": [], "nn.dense": []}
    counts = {"nn.conv2d": 6 + model, "nn.relu": 6 + model, "add": 2, "nn.dense": 1}
    for t, n in counts.items():
        for i in range(n):
            work = heavy * (1 + i % 3) if t in ("nn.conv2d", "nn.dense") else 0.002
            base = 0.01 + work * batch * 100 / max(sm, 20)
            out[t].append(float(base * (1 + 0.03 * rng.standard_normal())))
    return out


def _write_dataset(root: Path, n_models: int = 6) -> Path:
    folder = root / "op_runtime_features_all_models"
    folder.mkdir(parents=True)
    for m in range(n_models):
        for b in BATCHES:
            for s in SMS:
                times = _times(m, b, s)
                lat = sum(sum(v) for v in times.values()) * 1.02
                doc = {
                    **times,
                    "latency": lat,
                    "batch_size": b,
                    "model_name": f"net{m}",
                    "sm_partition": s,
                }
                (folder / f"net{m}_{b}_{s}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_dataset(tmp_path_factory.mktemp("opdata"))


@pytest.fixture(scope="module")
def synth_model(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return offline_ops.train_operator_model(
        synth, tmp_path_factory.mktemp("art") / "m.json.gz", 0, params=FAST
    )


def _doc(path: Path) -> dict:
    doc = json.loads(gzip.decompress(path.read_bytes()))
    for k in ("created", "train_seconds"):
        doc.pop(k)
    return doc


def test_training_is_deterministic_for_a_seed(
    synth: Path, synth_model: Path, tmp_path: Path
) -> None:
    again = offline_ops.train_operator_model(synth, tmp_path / "again.json.gz", 0, params=FAST)
    assert _doc(again) == _doc(synth_model)
    km = load_operator_model(synth_model)
    assert km.models == [f"net{m}" for m in range(6)]
    assert km.knows("net3") and not km.knows("bert")
    doc = _doc(synth_model)
    assert doc["sources"][0]["license"] == "Apache-2.0"
    assert doc["sources"][0]["commit"] == "600348c1e0e16ab57eba0ba8938528985442495e"
    assert doc["version"] == ops.VERSION


def test_kernels_sum_to_total_and_are_cached(synth_model: Path) -> None:
    km = load_operator_model(synth_model)
    k = km.kernels_s("net2", 2, 37.5, total_s=0.125)
    assert k.ndim == 1 and len(k) == 8 + 8 + 2 + 1
    assert np.all(k > 0) and k.sum() == pytest.approx(0.125, rel=1e-12)
    shape = km.shape("net2", 2, 37.5)
    assert km.shape("net2", 2, 37.5) is shape and not shape.flags.writeable  # cached
    assert k == pytest.approx(shape * 0.125)


def test_less_sm_is_not_faster(synth_model: Path) -> None:
    km = load_operator_model(synth_model)
    for m in ("net0", "net5"):
        for b in (1, 2, 3, 8):
            tot = [km.kernels_s(m, b, s).sum() for s in (3, 5, 10, 20, 33, 50, 75, 100)]
            assert all(a >= c * (1 - 1e-9) for a, c in zip(tot, tot[1:], strict=False)), (m, b)
    # anchored to the measured latency at a measured point
    assert km.kernels_s("net0", 1, 10).sum() * 1e3 == pytest.approx(
        sum(sum(v) for v in _times(0, 1, 10).values()) * 1.02, rel=1e-3
    )


def test_fallback_for_unknown_models(synth_model: Path) -> None:
    km = load_operator_model(synth_model, fallback_kernels=17)
    k = km.kernels_s("bert", 4, 30, total_s=0.2)
    assert len(k) == 17 and np.all(k >= 0) and k.sum() == pytest.approx(0.2)
    with pytest.raises(InputError, match="bert"):
        km.kernels_s("bert", 4, 30)
    for bad in ((1, 0.0), (1, 120.0), (0, 50.0)):
        with pytest.raises(InputError):
            km.kernels_s("net1", bad[0], bad[1])


def test_default_falls_back_without_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "ARTIFACT", tmp_path / "missing.json.gz")
    monkeypatch.setattr(ops, "_DEFAULT", None)
    km = ops.default_kernel_model()
    assert not km.knows("resnet50")
    assert km.kernels_s("resnet50", 1, 50, total_s=0.01).sum() == pytest.approx(0.01)


def test_committed_artifact() -> None:
    assert ops.ARTIFACT.stat().st_size < 200 * 1024
    km = default_kernel_model()
    assert isinstance(km, KernelModel) and km.knows("resnet50") and km.knows("alexnet")
    assert len(km.models) == 67 and not km.knows("bert")
    doc = json.loads(gzip.decompress(ops.ARTIFACT.read_bytes()))
    assert doc["sources"][0]["license"] == "Apache-2.0" and doc["version"] == ops.VERSION
    for m in ("resnet50", "vgg16", "densenet201", "regnet_y_128gf"):
        k = km.kernels_s(m, 1, 100)
        assert 1 <= len(k) <= km.max_kernels and np.all(k >= 0)
        for b in (1, 4, 8):
            tot = [km.kernels_s(m, b, s).sum() for s in (2, 5, 7.5, 10, 25, 45, 80, 100)]
            assert all(a >= c * (1 - 1e-9) for a, c in zip(tot, tot[1:], strict=False)), (m, b)
    # vgg16 is compute-bound at batch 1: SM 5 % is several times slower than the full GPU
    assert km.kernels_s("vgg16", 1, 5).sum() > 4 * km.kernels_s("vgg16", 1, 100).sum()
    fb = km.kernels_s("my-model", 2, 40, total_s=0.03)
    assert len(fb) == km.fallback_kernels and fb.sum() == pytest.approx(0.03)


def test_op_order_and_merging() -> None:
    order = ops.op_order(
        {"nn.conv2d": 4, "nn.batch_norm": 4, "nn.relu": 3, "add": 1, "nn.max_pool2d": 1}
        | {"nn.adaptive_avg_pool2d": 1, "nn.dense": 1}
    )
    assert order[:3] == [("nn.conv2d", 0), ("nn.batch_norm", 0), ("nn.relu", 0)]
    assert order.index(("nn.max_pool2d", 0)) < order.index(("nn.conv2d", 1))
    assert order[-2:] == [("nn.adaptive_avg_pool2d", 0), ("nn.dense", 0)]
    t = np.random.default_rng(0).lognormal(-4, 1.5, 900)
    starts = ops.merge_groups(t, 100)
    assert len(starts) <= 100 and starts[0] == 0 and np.all(np.diff(starts) > 0)
    assert np.add.reduceat(t, starts).sum() == pytest.approx(t.sum())
    assert list(ops.merge_groups(t[:50], 100)) == list(range(50))


def test_evaluation_holds_out_whole_models(synth: Path) -> None:
    data = offline_ops.load_operator_data(synth)
    res = offline_ops.evaluate_operator_model(data, folds=3, seed=1, params=FAST)
    models = sorted(set(data.ops.model))
    tested = [m for _, test in res.splits for m in test]
    assert sorted(tested) == models  # every model held out exactly once
    for train, test in res.splits:
        assert not set(train) & set(test) and sorted(train + test) == models
    assert np.isfinite(res.per_inference_mape) and np.isfinite(res.per_op_mape)
    assert res.n_inferences == len(models) * (len(SMS) * len(BATCHES) - 1)
    assert res.per_inference_mape < 0.5


def test_cli(
    synth: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ops, "OperatorParams", lambda seed=0: replace(FAST, seed=seed))
    out = tmp_path / "cli.json.gz"
    assert perf_main(["train-operators", "--data", str(synth), "--out", str(out)]) == 0
    assert load_operator_model(out).knows("net0")
    assert perf_main(["evaluate-operators", "--data", str(synth), "--folds", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("MAPE ") and last.endswith("%")
