"""Static per-model features from the architectures -> ``hasim/perf/data/model_features.csv``.

For each of the 69 torchvision ImageNet classifiers measured by RaPP (names as in the
RaPP files) plus ``bert`` (bert-large-uncased, question-answering head, 384 tokens), the
model is built on PyTorch's ``meta`` device (shapes only: no weights are created or
downloaded, nothing is computed) and run forward once on a batch-1 input
(``1x3x224x224``: RaPP's measurement input for every model, Inception v3 included;
BERT: ``1x384`` token ids). During that pass:

* ``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs of the matmul-type aten
  ops (convolution, addmm/mm/bmm, attention); MACs = FLOPs / 2;
* a ``TorchDispatchMode`` counts every aten op that runs (views excluded: those launch
  no kernel), by op name;
* forward hooks on the modules record each leaf module call (class, output size).

BERT is written here as a small ``nn.Module`` with bert-large-uncased's sizes (24 layers,
hidden 1024, 16 heads, FFN 4096, vocab 30522, 512 positions, 2 token types, GELU,
eager attention: matmul + softmax), checked against the known parameter count of
``BertForQuestionAnswering`` (334,094,338).

The models are defined by torchvision (BSD-3-Clause); only the derived numbers are
written. Environment (torchvision is not a hasim dependency; use a separate venv)::

    python -m venv /tmp/tvenv
    /tmp/tvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy pandas
    /tmp/tvenv/bin/python -m calibration.model_features  # from the repo root; writes the CSV

Options: ``--out PATH`` (default ``hasim/perf/data/model_features.csv``),
``--rapp-dir DIR`` (cross-check the model list against a RaPP
``graph_features_all_models`` folder), ``--models a,b`` (a subset, for a quick look).
The columns and their units are documented in ``hasim/perf/data/model_features.md``
and in :data:`COLUMNS` below.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
import torchvision
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "hasim" / "perf" / "data" / "model_features.csv"

sys.path.insert(0, str(ROOT))  # run as a script from a separate venv: find our package
from calibration.zoo import RAPP_MODELS  # noqa: E402  (the 69 models RaPP measured)

BERT_SEQ_LEN = 384
BERT_QA_PARAMS = 334_094_338
"""Parameters of bert-large-uncased with a question-answering head (no pooler)."""
FP32_BYTES = 4

COLUMNS = {
    "model": "model name (torchvision get_model name; bert = bert-large-uncased QA)",
    "family": "architecture family (alexnet, vgg, resnet, ..., bert)",
    "input_shape": "input of the counted forward pass (batch 1)",
    "params": "number of parameters",
    "param_bytes": "parameter size in bytes at FP32",
    "macs": "multiply-accumulates of conv/linear/matmul ops for one input (FLOPs / 2)",
    "flops": "FLOPs counted by torch.utils.flop_counter (2 per MAC) for one input",
    "activation_bytes": "sum of leaf-module output sizes, bytes at FP32, one input",
    "activation_max_bytes": "largest single leaf-module output, bytes at FP32",
    "depth": "leaf-module calls executed in one forward pass",
    "kernel_ops": "aten ops executed, views excluded (a proxy for kernel launches)",
    "n_conv": "convolutions (aten convolution; all kinds)",
    "n_conv_depthwise": "of which depthwise (groups == input channels > 1)",
    "n_conv_grouped": "of which grouped but not depthwise (groups > 1)",
    "n_linear": "nn.Linear calls",
    "n_bn": "batch norms (aten)",
    "n_norm": "layer/group norms (aten)",
    "n_relu": "ReLU/ReLU6 (aten relu, hardtanh; module or functional)",
    "n_gelu": "GELU (aten)",
    "n_silu": "SiLU (aten)",
    "n_hardswish": "Hardswish (aten)",
    "n_sigmoid": "Sigmoid/Hardsigmoid (aten)",
    "n_pool": "pooling (aten max/avg/adaptive pools; global average pooling = aten mean)",
    "n_attention": "attention-module calls (innermost modules whose class name has 'Attention')",
    "n_add": "aten add ops (residual adds, biases outside linear, ...)",
    "n_mul": "aten mul ops (squeeze-excitation gating, scaling, ...)",
    "n_cat": "aten cat ops (concatenations: DenseNet, Inception, ShuffleNet)",
    "n_bmm": "aten bmm ops (batched matmuls: attention scores and outputs)",
    "n_softmax": "aten softmax ops (one per attention)",
}


# --------------------------------------------------------------------------- BERT


class BertLayer(nn.Module):
    """One encoder layer: self-attention, add & norm, FFN (GELU), add & norm."""

    def __init__(self, hidden: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention = BertSelfAttention(hidden, heads)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.act = nn.GELU()
        self.ffn_out = nn.Linear(ffn, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(x + self.attn_out(self.attention(x, mask)))
        return self.ffn_norm(x + self.ffn_out(self.act(self.ffn_in(x))))


class BertSelfAttention(nn.Module):
    """Multi-head self-attention, eager: (Q K^T) / sqrt(d) + mask, softmax, times V."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        d = h // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d) + mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        return ctx.transpose(1, 2).reshape(b, n, h)


class BertForQA(nn.Module):
    """bert-large-uncased encoder with a span (start/end logits) head."""

    def __init__(
        self,
        vocab: int = 30522,
        hidden: int = 1024,
        layers: int = 24,
        heads: int = 16,
        ffn: int = 4096,
        positions: int = 512,
        token_types: int = 2,
    ) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(positions, hidden)
        self.token_type = nn.Embedding(token_types, hidden)
        self.emb_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer(hidden, heads, ffn) for _ in range(layers))
        self.qa = nn.Linear(hidden, 2)

    def forward(
        self, ids: torch.Tensor, token_types: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        n = ids.shape[1]
        pos = torch.arange(n, device=ids.device).unsqueeze(0)
        x = self.emb_norm(self.word(ids) + self.position(pos) + self.token_type(token_types))
        mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for layer in self.layers:
            x = layer(x, mask)
        return self.qa(x)


# --------------------------------------------------------------------------- counting


NO_KERNEL_OPS = frozenset({"empty", "empty_like", "empty_strided", "new_empty"})
"""Allocation-only aten ops (no kernel launch); views are excluded by ``OpOverload.is_view``."""

ATEN_KINDS = {
    "bn": ("native_batch_norm", "_native_batch_norm_legit_no_training", "batch_norm"),
    "norm": ("native_layer_norm", "native_group_norm"),
    "relu": ("relu", "relu_", "hardtanh", "hardtanh_"),
    "gelu": ("gelu", "gelu_"),
    "silu": ("silu", "silu_"),
    "hardswish": ("hardswish", "hardswish_"),
    "sigmoid": ("sigmoid", "sigmoid_", "hardsigmoid", "hardsigmoid_"),
    "pool": (
        "max_pool2d_with_indices",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "_adaptive_avg_pool2d",
        "adaptive_max_pool2d",
        "mean",
    ),
    "add": ("add", "add_"),
    "mul": ("mul", "mul_"),
    "cat": ("cat",),
    "bmm": ("bmm",),
    "softmax": ("_softmax", "softmax"),
}
"""Feature name -> the aten ops (overload packet names) it counts. Global average pooling
reaches aten as ``mean``; ReLU6 as ``hardtanh``."""


class AtenCounter(TorchDispatchMode):
    """Counts the aten ops that run (views excluded) by name, and convolutions by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.convs: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func.overloadpacket.__name__
        if not func.is_view:
            self.ops[name] += 1
        if name == "convolution":
            groups, in_channels = int(args[8]), int(args[0].shape[1])
            if groups > 1 and groups == in_channels:
                self.convs["conv_depthwise"] += 1
            elif groups > 1:
                self.convs["conv_grouped"] += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules with their parameters and buffers on the meta device.

    Each parameter/buffer is moved to ``meta`` as it is registered (so later weight
    initialisation costs nothing), while other tensors that a constructor computes with
    (e.g. RegNet's block widths, which fail under a meta default device) stay on the
    CPU."""
    reg_param, reg_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def register_parameter(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        reg_param(self, name, param)

    def register_buffer(
        self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True
    ) -> None:
        if tensor is not None:
            tensor = tensor.to("meta")
        reg_buffer(self, name, tensor, persistent)

    nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
    nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = reg_param  # type: ignore[method-assign]
        nn.Module.register_buffer = reg_buffer  # type: ignore[method-assign]


def _numel(out: object) -> list[int]:
    if isinstance(out, torch.Tensor):
        return [out.numel()]
    if isinstance(out, list | tuple):
        return [n for o in out for n in _numel(o)]
    if isinstance(out, dict):
        return [n for o in out.values() for n in _numel(o)]
    return []


def _is_attention(mod: nn.Module) -> bool:
    return "Attention" in type(mod).__name__


def family(name: str) -> str:
    """Architecture family from a model name (``resnext50_32x4d`` -> ``resnext``)."""
    if name == "bert":
        return "bert"
    for fam in ("wide_resnet", "efficientnet_v2", "mobilenet_v2", "mobilenet_v3", "shufflenet"):
        if name.startswith(fam):
            return fam
    m = re.match(r"^(regnet_[xy]|[a-z]+)", name)
    return m.group(1) if m else name


def build(name: str) -> tuple[nn.Module, tuple[torch.Tensor, ...], str]:
    """The model with meta parameters, its batch-1 meta inputs and their shape string."""
    meta = torch.device("meta")
    with parameters_on_meta(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # googlenet/inception init notice
        if name == "bert":
            model: nn.Module = BertForQA()
        else:
            model = torchvision.models.get_model(name, weights=None)
    if name == "bert":
        ids = torch.zeros(1, BERT_SEQ_LEN, dtype=torch.long, device=meta)
        inputs: tuple[torch.Tensor, ...] = (ids, torch.zeros_like(ids), torch.ones_like(ids))
        shape = f"1x{BERT_SEQ_LEN}"
    else:
        inputs = (torch.zeros(1, 3, 224, 224, device=meta),)
        shape = "1x3x224x224"
    bad = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if not t.is_meta]
    if bad:
        raise RuntimeError(f"{name}: tensors not on the meta device: {bad[:3]}")
    return model.eval(), inputs, shape


def features(name: str) -> dict[str, object]:
    """One model's row."""
    model, inputs, shape = build(name)
    sizes: list[int] = []
    leaf_calls = [0]
    n_linear = [0]
    n_attention = [0]
    handles = []

    def leaf_hook(mod: nn.Module, _inp: object, out: object) -> None:
        sizes.extend(_numel(out))
        leaf_calls[0] += 1
        if isinstance(mod, nn.Linear):
            n_linear[0] += 1

    def attn_hook(_mod: nn.Module, _inp: object, _out: object) -> None:
        n_attention[0] += 1

    for mod in model.modules():
        if not any(True for _ in mod.children()):
            handles.append(mod.register_forward_hook(leaf_hook))
        if _is_attention(mod) and not any(_is_attention(c) for c in mod.modules() if c is not mod):
            handles.append(mod.register_forward_hook(attn_hook))
    flop_counter = FlopCounterMode(display=False)
    aten = AtenCounter()
    with torch.no_grad(), flop_counter, aten:
        model(*inputs)
    for h in handles:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    flops = int(flop_counter.get_total_flops())
    ops = aten.ops
    row: dict[str, object] = {
        "model": name,
        "family": family(name),
        "input_shape": shape,
        "params": params,
        "param_bytes": params * FP32_BYTES,
        "macs": flops // 2,
        "flops": flops,
        "activation_bytes": sum(sizes) * FP32_BYTES,
        "activation_max_bytes": max(sizes, default=0) * FP32_BYTES,
        "depth": leaf_calls[0],
        "kernel_ops": sum(v for k, v in ops.items() if k not in NO_KERNEL_OPS),
        "n_conv": ops.get("convolution", 0),
        "n_conv_depthwise": aten.convs.get("conv_depthwise", 0),
        "n_conv_grouped": aten.convs.get("conv_grouped", 0),
        "n_linear": n_linear[0],
    }
    for kind in ("bn", "norm", "relu", "gelu", "silu", "hardswish", "sigmoid", "pool"):
        row[f"n_{kind}"] = sum(ops.get(op, 0) for op in ATEN_KINDS[kind])
    row["n_attention"] = n_attention[0]
    for kind in ("add", "mul", "cat", "bmm", "softmax"):
        row[f"n_{kind}"] = sum(ops.get(op, 0) for op in ATEN_KINDS[kind])
    return row


def check_rapp_dir(directory: Path) -> None:
    """Fail unless the RaPP folder's model names are exactly :data:`RAPP_MODELS`."""
    names = {re.sub(r"_\d+\.json(\.gz)?$", "", p.name) for p in directory.glob("*.json*")}
    if names != set(RAPP_MODELS):
        raise SystemExit(
            f"model list differs from {directory}: "
            f"missing here {sorted(names - set(RAPP_MODELS))}, "
            f"absent there {sorted(set(RAPP_MODELS) - names)}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--rapp-dir", type=Path, default=None)
    ap.add_argument("--models", default="", help="comma-separated subset (default: all 70)")
    args = ap.parse_args(argv)
    if args.rapp_dir is not None:
        check_rapp_dir(args.rapp_dir)
    names = args.models.split(",") if args.models else [*RAPP_MODELS, "bert"]
    t0 = time.perf_counter()
    rows = []
    for name in names:
        t = time.perf_counter()
        rows.append(features(name))
        r = rows[-1]
        print(
            f"{name:22s} params {r['params'] / 1e6:8.2f} M  MACs {r['macs'] / 1e9:8.3f} G  "
            f"depth {r['depth']:5d}  ops {r['kernel_ops']:5d}  ({time.perf_counter() - t:.2f} s)",
            file=sys.stderr,
        )
    bert = next((r for r in rows if r["model"] == "bert"), None)
    if bert is not None and bert["params"] != BERT_QA_PARAMS:
        raise SystemExit(f"bert has {bert['params']} parameters, expected {BERT_QA_PARAMS}")
    df = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values("model", kind="stable")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False, lineterminator="\n")
    print(
        f"wrote {len(df)} models to {args.out} in {time.perf_counter() - t0:.1f} s "
        f"(torch {torch.__version__}, torchvision {torchvision.__version__})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
