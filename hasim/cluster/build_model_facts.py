"""Build ``hasim/cluster/data/model_facts.csv``: parameters, weights and GPU memory of
every model a latency model knows.

    python -m hasim.cluster.build_model_facts [--data DIR]

Sources of the parameter counts (column ``params_source``):

* ``model_features``: ``hasim/perf/data/model_features.csv``, counted by our
  ``calibration/model_features.py`` from the torchvision definitions (69 CNNs) and the
  HuggingFace BERT-large QA definition (``bert``);
* ``migprofiler``: the ``total_params`` column MIGProfiler wrote next to its A100 40 GB
  latencies (sentence-transformer models, MIT);
* ``formula``: counted here from the published architecture (``bert-base``:
  BERT-base uncased, 12 layers, width 768, vocabulary 30,522; ``vision_transformer``:
  torchvision's ViT-B/16, 224 px, 1,000 classes).

Memory (MB = 10^6 bytes): ``weights_mb`` = 4 bytes per parameter (FP32);
``gpu_mem_mb`` = the GPU memory of one pod: FaST-GShare's measured 1,525 MB for a
ResNet-50 pod on a V100 (SYSTEMS.md 3), and for other models the same fixed part
(CUDA context, allocator; 1,525 MB minus ResNet-50's weights) plus 1.5 x the weights
(weights plus activations and allocator cache), an estimate.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

OUT = Path(__file__).resolve().parent / "data" / "model_facts.csv"
RESNET50_POD_MB = 1525.0
WEIGHT_FACTOR = 1.5


def _encoder_layer(d: int, ff: int) -> int:
    """Parameters of one transformer encoder layer of width ``d`` and MLP width ``ff``."""
    attn = 4 * d * d + 4 * d
    mlp = d * ff + ff + ff * d + d
    norms = 2 * 2 * d
    return attn + mlp + norms


def bert_base_params() -> int:
    """BERT-base uncased (BertModel with pooler): 109,482,240."""
    d, vocab, pos = 768, 30522, 512
    emb = vocab * d + pos * d + 2 * d + 2 * d
    return emb + 12 * _encoder_layer(d, 3072) + d * d + d


def vit_b_16_params() -> int:
    """torchvision ViT-B/16 at 224 px with a 1,000-class head: 86,567,656."""
    d, patches = 768, (224 // 16) ** 2
    embed = 3 * 16 * 16 * d + d + d + (patches + 1) * d  # conv, class token, positions
    return embed + 12 * _encoder_layer(d, 3072) + 2 * d + d * 1000 + 1000


def collect(data: Path | None = None) -> dict[str, tuple[int, str]]:
    """model -> (parameters, source) for every model of the packaged latency laws."""
    import json

    import pandas as pd

    from hasim.perf.compact import PACKAGED_BY_GPU
    from hasim.perf.offline.features import model_features

    feats = model_features()
    pairs = zip(feats["model"], feats["params"], strict=True)
    out: dict[str, tuple[int, str]] = {str(m): (int(p), "model_features") for m, p in pairs}
    out["bert-base"] = (bert_base_params(), "formula")
    out["vision_transformer"] = (vit_b_16_params(), "formula")
    from hasim.paths import data_dir

    root = (data or data_dir()) / "measurements/migprofiler-a100-mig"
    for f in sorted(root.rglob("*_MIG_profile_*.csv")):
        df = pd.read_csv(f)
        if "total_params" in df.columns:
            for m, p in zip(df["model_name"], df["total_params"], strict=True):
                out.setdefault(str(m), (int(p), "migprofiler"))
    needed = set()
    for path in PACKAGED_BY_GPU.values():
        needed |= set(json.loads(path.read_text())["models"])
    missing = sorted(needed - set(out))
    if missing:
        raise SystemExit(f"no parameter count for {', '.join(missing)}")
    return {m: out[m] for m in sorted(needed | set(feats["model"]))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, help="data dir (default: hasim's)")
    args = ap.parse_args(argv)
    params = collect(args.data)
    base = RESNET50_POD_MB - params["resnet50"][0] * 4 / 1e6
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["model", "params", "weights_mb", "gpu_mem_mb", "params_source"])
        for m, (p, src) in params.items():
            weights = p * 4 / 1e6
            mem = RESNET50_POD_MB if m == "resnet50" else base + WEIGHT_FACTOR * weights
            w.writerow([m, p, f"{weights:.3f}", f"{mem:.1f}", src])
    print(f"wrote {OUT} ({len(params)} models)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
