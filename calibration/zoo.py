"""Models to calibrate: torchvision's (random weights) when importable, else our own.

:func:`resolve` turns a model spec into a :class:`ModelSpec` (a name, a factory and
where the definition comes from):

* ``resnet18``, ``mobilenet_v2``...: torchvision's ``get_model(name, weights=None)``
  when torchvision is importable (random weights; nothing is downloaded), else the
  self-written definition of the same architecture below (``impl = "hasim-zoo"``);
* ``module.path:factory`` or ``name=module.path:factory``: any callable returning a
  ``torch.nn.Module`` (``impl = "user"``); the name is the factory's name unless given.

The definitions here are written from the papers (ResNet: He et al. 2015, with the
stride on the 3x3 convolution of the bottleneck as in torchvision's "v1.5";
MobileNetV2: Sandler et al. 2018; SqueezeNet 1.1: Iandola et al. 2016 plus the 1.1
changes; VGG-11: Simonyan & Zisserman 2014, configuration A). Their layer shapes,
parameter counts and FLOPs match the torchvision models of the same name, so their
measurements line up with RaPP's model names and ``hasim/perf/data/model_features.csv``;
:data:`PARAMS` holds the reference parameter counts (checked by the tests).
``tinycnn`` is a small smoke-test network (no torchvision counterpart).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

# --------------------------------------------------------------------------- building blocks


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class _Residual(nn.Module):
    """relu(body(x) + shortcut(x)); the shortcut is the identity, or a strided 1x1
    projection when the shape changes. Subclasses build ``body``."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int, body: list[nn.Module]) -> None:
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(*body)
        self.shortcut = (
            nn.Sequential(*_conv_bn(cin, cout, 1, stride))
            if stride != 1 or cin != cout
            else nn.Identity()
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class BasicBlock(_Residual):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        cout = width * self.expansion
        body = [*_conv_bn(cin, width, 3, stride), nn.ReLU(inplace=True), *_conv_bn(width, cout, 3)]
        super().__init__(cin, width, stride, body)


class Bottleneck(_Residual):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand (x4), with a shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1) -> None:
        body = [
            *_conv_bn(cin, width, 1),
            nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride),
            nn.ReLU(inplace=True),
            *_conv_bn(width, width * self.expansion, 1),
        ]
        super().__init__(cin, width, stride, body)


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 stem, max-pool, four stages (64..512 wide), pool, FC."""

    def __init__(
        self, block: type[BasicBlock] | type[Bottleneck], depths: tuple[int, ...], classes: int
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            *_conv_bn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
        )
        stages: list[nn.Module] = []
        cin = 64
        for i, (n, width) in enumerate(zip(depths, (64, 128, 256, 512), strict=True)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (ReLU6), 3x3 depthwise (ReLU6), 1x1 linear project."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1), nn.ReLU6(inplace=True)]
        layers += [
            *_conv_bn(hidden, hidden, 3, stride, groups=hidden),
            nn.ReLU6(inplace=True),
            *_conv_bn(hidden, cout, 1),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0): the (t, c, n, s) table of the paper, 1280-wide head."""

    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [*_conv_bn(3, 32, 3, 2), nn.ReLU6(inplace=True)]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for j in range(n):
                layers.append(InvertedResidual(cin, c, s if j == 0 else 1, t))
                cin = c
        layers += [*_conv_bn(cin, 1280, 1), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class Fire(nn.Module):
    """SqueezeNet fire module: 1x1 squeeze, then parallel 1x1 and 3x3 expands, concat."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU(inplace=True))
        self.e1 = nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU(inplace=True))
        self.e3 = nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.e1(s), self.e3(s)], 1)


class SqueezeNet11(nn.Module):
    """SqueezeNet 1.1: 3x3/2 stem with 64 filters, pools after fire 2/4, conv classifier."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()

        def pool() -> nn.Module:
            return nn.MaxPool2d(3, 2, ceil_mode=True)

        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2),
            nn.ReLU(inplace=True),
            pool(),
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            pool(),
            Fire(128, 32, 128, 128),
            Fire(256, 32, 128, 128),
            pool(),
            Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256),
            Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5),
            nn.Conv2d(512, classes, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


class VGG(nn.Module):
    """VGG: 3x3 convolutions (with ReLU) and 2x2 max-pools, 7x7 pool, 3 FC layers."""

    def __init__(self, plan: tuple[int | str, ...], classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in plan:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                assert isinstance(v, int)
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
                cin = v
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(
            nn.Linear(cin * 49, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class TinyCNN(nn.Module):
    """A small smoke-test network: three strided 3x3 conv/BN/ReLU layers, pool, FC."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(3, 8, 3, 2),
            nn.ReLU(inplace=True),
            *_conv_bn(8, 16, 3, 2),
            nn.ReLU(inplace=True),
            *_conv_bn(16, 32, 3, 2),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


# --------------------------------------------------------------------------- registry


def resnet18() -> nn.Module:
    return ResNet(BasicBlock, (2, 2, 2, 2), 1000)


def resnet34() -> nn.Module:
    return ResNet(BasicBlock, (3, 4, 6, 3), 1000)


def resnet50() -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3), 1000)


def mobilenet_v2() -> nn.Module:
    return MobileNetV2(1000)


def squeezenet1_1() -> nn.Module:
    return SqueezeNet11(1000)


def vgg11() -> nn.Module:
    return VGG((64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"), 1000)


def tinycnn() -> nn.Module:
    return TinyCNN(10)


ZOO: dict[str, Callable[[], nn.Module]] = {
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "squeezenet1_1": squeezenet1_1,
    "vgg11": vgg11,
    "tinycnn": tinycnn,
}
"""Our own definitions, by torchvision name (``tinycnn``: smoke tests only)."""

PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "squeezenet1_1": 1_235_496,
    "vgg11": 132_863_336,
}
"""Parameter counts of torchvision's models of these names (ImageNet, 1000 classes)."""

QUICK_TORCHVISION = (
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "densenet121",
    "efficientnet_b0",
    "vgg16",
)
"""The six models of ``--quick`` on a GPU when torchvision is importable (all in RaPP)."""
QUICK_ZOO = ("resnet18", "resnet34", "resnet50", "mobilenet_v2", "squeezenet1_1", "vgg11")
"""The six models of ``--quick`` on a GPU with our own definitions."""


RAPP_MODELS = (
    "alexnet convnext_base convnext_large convnext_small convnext_tiny densenet121 "
    "densenet161 densenet169 densenet201 efficientnet_b0 efficientnet_b1 efficientnet_b2 "
    "efficientnet_b3 efficientnet_b4 efficientnet_b5 efficientnet_b6 efficientnet_b7 "
    "efficientnet_v2_l efficientnet_v2_m efficientnet_v2_s googlenet inception_v3 maxvit_t "
    "mnasnet0_5 mnasnet0_75 mnasnet1_0 mnasnet1_3 mobilenet_v2 mobilenet_v3_large "
    "mobilenet_v3_small regnet_x_16gf regnet_x_1_6gf regnet_x_32gf regnet_x_3_2gf "
    "regnet_x_400mf regnet_x_800mf regnet_x_8gf regnet_y_128gf regnet_y_16gf regnet_y_1_6gf "
    "regnet_y_32gf regnet_y_3_2gf regnet_y_400mf regnet_y_800mf regnet_y_8gf resnet101 "
    "resnet152 resnet18 resnet34 resnet50 resnext101_32x8d resnext101_64x4d resnext50_32x4d "
    "shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5 shufflenet_v2_x2_0 "
    "squeezenet1_0 squeezenet1_1 vgg11 vgg11_bn vgg13 vgg13_bn vgg16 vgg16_bn vgg19 vgg19_bn "
    "wide_resnet101_2 wide_resnet50_2"
).split()
"""The 69 torchvision models RaPP measured (the ``--full`` list with torchvision)."""


def torchvision_available() -> bool:
    try:
        importlib.import_module("torchvision")
    except Exception:  # ImportError, or a torchvision built for another torch
        return False
    return True


def torchvision_models() -> list[str]:
    """torchvision's image-classification model names ([] without torchvision)."""
    if not torchvision_available():
        return []
    import torchvision

    try:
        return sorted(torchvision.models.list_models(module=torchvision.models))
    except Exception:
        return []


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model: ``name`` (the ``model`` column), ``spec`` (as given), ``impl``
    (``torchvision``, ``hasim-zoo`` or ``user``) and the zero-argument ``factory``."""

    name: str
    spec: str
    impl: str
    factory: Callable[[], nn.Module]

    def build(self) -> nn.Module:
        m = self.factory()
        if not isinstance(m, nn.Module):
            raise TypeError(f"{self.spec}: the factory returned {type(m).__name__}, not nn.Module")
        return m


def _user_factory(spec: str) -> ModelSpec:
    name, _, target = spec.rpartition("=") if "=" in spec else ("", "", spec)
    mod_name, _, attr = target.partition(":")
    if not mod_name or not attr:
        raise ValueError(f"{spec!r}: expected module.path:factory or name=module.path:factory")
    try:
        mod = importlib.import_module(mod_name)
    except Exception as e:
        raise ValueError(f"{spec!r}: cannot import {mod_name!r}: {e}") from None
    obj: object = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{spec!r}: {mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{spec!r}: {attr!r} is not callable")
    label = name.strip() or attr.split(".")[-1]
    return ModelSpec(label, spec, "user", obj)  # type: ignore[arg-type]


def available(zoo: str = "auto") -> list[str]:
    """The model names :func:`resolve` accepts (besides ``module:factory``)."""
    if zoo == "hasim":
        return sorted(ZOO)
    tv = torchvision_models() if zoo in ("auto", "torchvision") else []
    if zoo == "torchvision":
        return tv
    return sorted(set(tv) | set(ZOO))


def resolve(spec: str, zoo: str = "auto") -> ModelSpec:
    """A :class:`ModelSpec` for ``spec``; ValueError naming the choices when unknown.

    ``zoo``: ``auto`` (torchvision when importable, else ours), ``torchvision`` (only
    torchvision) or ``hasim`` (only ours).
    """
    spec = spec.strip()
    if ":" in spec:
        return _user_factory(spec)
    if zoo not in ("auto", "torchvision", "hasim"):
        raise ValueError(f"zoo {zoo!r}: expected auto, torchvision or hasim")
    if zoo in ("auto", "torchvision") and spec in torchvision_models():
        import torchvision

        def build_tv(name: str = spec) -> nn.Module:
            aux = name in ("inception_v3", "googlenet")  # no auxiliary heads at inference
            kw = {"aux_logits": False, "init_weights": False} if aux else {}
            return torchvision.models.get_model(name, weights=None, **kw)

        return ModelSpec(spec, spec, "torchvision", build_tv)
    if zoo in ("auto", "hasim") and spec in ZOO:
        return ModelSpec(spec, spec, "hasim-zoo", ZOO[spec])
    names = available(zoo)
    where = (
        "torchvision + our zoo"
        if zoo == "auto" and torchvision_available()
        else ("our zoo (torchvision is not installed)" if zoo != "torchvision" else "torchvision")
    )
    raise ValueError(
        f"unknown model {spec!r}; known in {where}: {', '.join(names) or '(none)'}; "
        "or give module.path:factory"
    )


def quick_models(zoo: str = "auto") -> tuple[str, ...]:
    """The six models of a GPU ``--quick`` run."""
    if zoo != "hasim" and torchvision_available():
        return QUICK_TORCHVISION
    return QUICK_ZOO


def full_models(zoo: str = "auto") -> tuple[str, ...]:
    """The models of a ``--full`` run: RaPP's 69 with torchvision, else all of ours."""
    if zoo != "hasim" and torchvision_available():
        tv = set(torchvision_models())
        return tuple(m for m in RAPP_MODELS if m in tv)
    return tuple(m for m in ZOO if m != "tinycnn")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
