"""Static facts about the served DNNs that the cluster needs: weights and GPU memory.

``weights_mb`` is the FP32 parameter size (drives model-load time);
``gpu_mem_mb`` the GPU memory one pod of the model holds (CUDA context, weights,
activations, allocator cache). FaST-GShare measured 1,525 MB for a ResNet-50 pod on a
V100 (SYSTEMS.md 3); other footprints are scaled from the weights with the same
overhead. Parameter counts are those published for the torchvision / HuggingFace
reference models.
"""

from __future__ import annotations

from dataclasses import dataclass

# parameters in millions (torchvision model cards; BERT = bert-large QA as in HAS-GPU)
_PARAMS_M: dict[str, float] = {
    "alexnet": 61.1,
    "vgg16": 138.4,
    "vgg19": 143.7,
    "resnet18": 11.7,
    "resnet34": 21.8,
    "resnet50": 25.6,
    "resnet101": 44.5,
    "resnet152": 60.2,
    "densenet121": 8.0,
    "densenet201": 20.0,
    "inception_v3": 27.2,
    "googlenet": 6.6,
    "mobilenet_v2": 3.5,
    "mobilenet_v3_large": 5.5,
    "mobilenet_v3_small": 2.5,
    "shufflenet_v2_x1_0": 2.3,
    "squeezenet1_0": 1.2,
    "efficientnet_b0": 5.3,
    "efficientnet_b7": 66.3,
    "convnext_tiny": 28.6,
    "convnext_small": 50.2,
    "convnext_base": 88.6,
    "convnext_large": 197.8,
    "vit_b_16": 86.6,
    "vit_h_14": 633.5,
    "bert": 335.0,
    "resnext50_32x4d": 25.0,
    "resnext101_32x8d": 88.8,
    "wide_resnet50_2": 68.9,
    "regnet_y_128gf": 644.8,
    "maxvit_t": 30.9,
}
_DEFAULT_PARAMS_M = 30.0
_RESNET50_POD_MB = 1525.0


@dataclass(frozen=True)
class ModelFacts:
    """weights_mb: FP32 weights in MB; gpu_mem_mb: one pod's GPU memory in MB."""

    name: str
    weights_mb: float
    gpu_mem_mb: float


def model_facts(name: str, overrides: dict[str, float] | None = None) -> ModelFacts:
    """Facts for ``name``; ``overrides`` maps model -> gpu_mem_mb."""
    params = _PARAMS_M.get(name, _DEFAULT_PARAMS_M)
    weights = params * 4.0
    base = _RESNET50_POD_MB - _PARAMS_M["resnet50"] * 4.0
    mem = base + weights * 1.5 if name != "resnet50" else _RESNET50_POD_MB
    if overrides and name in overrides:
        mem = float(overrides[name])
    return ModelFacts(name, weights, mem)
