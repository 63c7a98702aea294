"""Our own model definitions (calibration/zoo.py) and model resolution."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from calibration import zoo  # noqa: E402


@pytest.mark.parametrize("name", sorted(zoo.PARAMS))
def test_zoo_matches_torchvision_parameter_counts(name):
    with torch.device("meta"):  # shapes only: nothing allocated
        m = zoo.ZOO[name]()
    assert zoo.n_params(m) == zoo.PARAMS[name]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "squeezenet1_1"])
def test_zoo_forward_shapes(name):
    with torch.device("meta"):
        m = zoo.ZOO[name]().eval()
        y = m(torch.empty(2, 3, 224, 224))
    assert tuple(y.shape) == (2, 1000)


def test_tinycnn_runs_on_cpu():
    m = zoo.tinycnn().eval()
    with torch.inference_mode():
        assert tuple(m(torch.randn(1, 3, 32, 32)).shape) == (1, 10)


def test_resolve_names_and_factories():
    ms = zoo.resolve("resnet18", "hasim")
    assert (ms.name, ms.impl) == ("resnet18", "hasim-zoo")
    u = zoo.resolve("calibration.zoo:tinycnn")
    assert (u.name, u.impl) == ("tinycnn", "user")
    assert isinstance(u.build(), torch.nn.Module)
    v = zoo.resolve("tiny=calibration.zoo:tinycnn")
    assert v.name == "tiny"


@pytest.mark.parametrize(
    ("spec", "msg"),
    [
        ("resnet9000", "unknown model 'resnet9000'"),
        ("no.such.module:f", "cannot import"),
        ("calibration.zoo:nope", "has no attribute"),
        ("calibration.zoo:PARAMS", "not callable"),
        (":f", "expected module.path:factory"),
    ],
)
def test_resolve_refuses_unknown_models(spec, msg):
    with pytest.raises(ValueError, match=msg):
        zoo.resolve(spec)


def test_torchvision_only_zoo_without_torchvision():
    if zoo.torchvision_available():
        pytest.skip("torchvision is installed here")
    with pytest.raises(ValueError, match="unknown model"):
        zoo.resolve("resnet18", "torchvision")
    assert zoo.quick_models() == zoo.QUICK_ZOO
    assert "tinycnn" not in zoo.full_models()
