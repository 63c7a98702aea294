"""The hardware catalogue: every fact hasim knows about a GPU type, in one place.

A leaf module: it imports only :mod:`hasim.errors` (itself free of hasim imports), so
every layer (cluster, perf, autoscalers, calibration) may import it. Other modules do
not keep GPU facts of their own; they look them up here by name.

Names: one canonical spelling per GPU (``V100-16GB``, ``A100-40GB``, ``A100-80GB``,
``H100``, ``H100-PCIe``, ``H200``); :data:`ALIASES` lists the other spellings accepted
(case-insensitive, ``_`` and spaces read as ``-``). ``A100`` alone means the 40 GB
part, as it did in hasim's cluster configs.

Sources (boost clocks, dense tensor-core rates, without structured sparsity):

* V100 SXM2 16 GB: "NVIDIA Tesla V100 GPU Accelerator" datasheet (2018) and the
  "NVIDIA Tesla V100 GPU Architecture" whitepaper (2017). RaPP's V100 16 GB (LRZ cloud
  VMs) form factor is not stated; SXM2 figures here.
* A100 SXM4 40 GB / 80 GB: "NVIDIA A100 Tensor Core GPU" datasheet (2021) and the
  "NVIDIA A100 Tensor Core GPU Architecture" whitepaper (2020).
* H100 SXM5 80 GB / H100 PCIe 80 GB: "NVIDIA H100 Tensor Core GPU" datasheet (2023) and
  the "NVIDIA H100 Tensor Core GPU Architecture" whitepaper (2022).
* H200 SXM 141 GB: "NVIDIA H200 Tensor Core GPU" datasheet (2024).
* MIG profiles: NVIDIA's "Multi-Instance GPU User Guide" (supported-profiles tables
  of the A100 40 GB, A100 80 GB and H100 80 GB, and ``nvidia-smi mig -lgipp``
  placements). A GPU instance takes ``compute_slices`` of the 7 compute slices (GPCs)
  and ``memory_slices`` of the 8 memory slices (each 1/8 of the memory, L2 cache and
  memory bandwidth); ``placements`` are the memory-slice indices where it may start
  (it covers ``[start, start + memory_slices)``). Two instances may share a GPU when
  their slice ranges do not overlap and their compute slices sum to at most 7.
  ``sm_count``: SMs of the instance: on the A100, 14 per compute slice (98 in 7g, as
  FaST-GShare's A100 MIG profile's 13/26/39/52/91 % of 108 SMs show); on the H100 the
  guide gives fractions only, so ``None`` (use :meth:`MigProfile.sm_fraction`).
* Prices (USD per GPU-hour): the per-GPU share of common on-demand cloud instances
  (p3 / p4d / p4de / p5 class), 2024; ``None`` where hasim has no figure (a cluster of
  that GPU then needs ``cluster.price_per_gpu_hour``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hasim.errors import InputError

MIG_COMPUTE_SLICES = 7
"""Compute slices (GPCs) a MIG-capable GPU offers to instances."""
MIG_MEMORY_SLICES = 8
"""Memory slices (each 1/8 of memory, L2 and bandwidth) of a MIG-capable GPU."""


@dataclass(frozen=True)
class MigProfile:
    """One MIG GPU-instance profile.

    name: NVIDIA's profile name (``3g.20gb``); profile_id: ``nvidia-smi mig -lgip`` id;
    compute_slices: GPCs (of 7); memory_slices: 1/8 memory slices; memory_mb: memory of
    the instance in MB (MiB, as nvidia-smi counts); placements: allowed start memory
    slices; sm_count: SMs of the instance (None when not documented).
    """

    name: str
    profile_id: int
    compute_slices: int
    memory_slices: int
    memory_mb: int
    placements: tuple[int, ...]
    sm_count: int | None = None

    def sm_fraction(self, gpu: GpuSpec) -> float:
        """Fraction of the whole GPU's SMs this instance computes with (0, 1]."""
        if self.sm_count is not None:
            return self.sm_count / gpu.sm_count
        return self.compute_slices / MIG_COMPUTE_SLICES

    def slots(self, start: int) -> range:
        """Memory slices covered when the instance starts at ``start``."""
        return range(start, start + self.memory_slices)


@dataclass(frozen=True)
class GpuSpec:
    """A GPU type: datasheet figures, price and MIG profiles.

    sm_count: streaming multiprocessors; memory_mb: device memory in MB (MiB);
    mem_bandwidth_gbs: GB/s; peak_fp32_tflops / peak_fp16_tensor_tflops: TFLOP/s (dense);
    l2_mb: L2 cache in MB; boost_clock_mhz: MHz; price_per_hour: USD per GPU-hour (None =
    unknown); mig: MIG GPU-instance profiles (empty = no MIG).
    """

    name: str
    sm_count: int
    memory_mb: int
    mem_bandwidth_gbs: float
    peak_fp32_tflops: float
    peak_fp16_tensor_tflops: float
    l2_mb: float
    boost_clock_mhz: int
    form_factor: str
    price_per_hour: float | None
    mig: tuple[MigProfile, ...] = ()

    @property
    def memory_gb(self) -> float:
        """Device memory in GB (GiB)."""
        return self.memory_mb / 1024.0

    @property
    def mig_max_instances(self) -> int:
        """Most MIG instances at once (0 = no MIG)."""
        return MIG_COMPUTE_SLICES if self.mig else 0

    def mig_profile(self, name: str | int) -> MigProfile:
        """The MIG profile named ``name`` (``"1g.10gb"``) or with that profile id."""
        for p in self.mig:
            if p.name == name or p.profile_id == name:
                return p
        if not self.mig:
            raise InputError(f"GPU {self.name} has no MIG", expected="a MIG-capable GPU")
        raise InputError(
            f"unknown MIG profile {name!r} on {self.name}",
            expected="one of " + ", ".join(p.name for p in self.mig),
        )

    def features(self) -> dict[str, object]:
        """The datasheet figures as a plain dict (a new dict each call)."""
        return {
            "name": self.name,
            "sm_count": self.sm_count,
            "peak_fp32_tflops": self.peak_fp32_tflops,
            "peak_fp16_tensor_tflops": self.peak_fp16_tensor_tflops,
            "mem_bandwidth_gbs": self.mem_bandwidth_gbs,
            "memory_gb": self.memory_gb,
            "l2_mb": self.l2_mb,
            "boost_clock_mhz": self.boost_clock_mhz,
            "mig_max_instances": self.mig_max_instances,
            "form_factor": self.form_factor,
        }


_PLACEMENTS = {  # memory slices per profile size -> allowed start slices (nvidia-smi mig -lgipp)
    (1, 1): (0, 1, 2, 3, 4, 5, 6),
    (1, 2): (0, 2, 4, 6),
    (2, 2): (0, 2, 4),
    (3, 4): (0, 4),
    (4, 4): (0,),
    (7, 8): (0,),
}
"""(compute slices, memory slices) -> allowed start memory slices; the same on the A100
40 GB, A100 80 GB, H100 and H200."""


def _mig(names: tuple[str, ...], memory_mb: int, sm_per_gpc: int | None) -> tuple[MigProfile, ...]:
    """The six MIG profiles of a GPU with ``memory_mb`` of memory, named ``names`` in the
    order 1g (1 slice), 1g (2 slices), 2g, 3g, 4g, 7g. Instance memory is nominal:
    memory slices x ``memory_mb`` / 8."""
    shape = ((19, 1, 1), (15, 1, 2), (14, 2, 2), (9, 3, 4), (5, 4, 4), (0, 7, 8))
    out = []
    for name, (pid, c, m) in zip(names, shape, strict=True):
        sm = None if sm_per_gpc is None else sm_per_gpc * c
        mem = m * memory_mb // MIG_MEMORY_SLICES
        out.append(MigProfile(name, pid, c, m, mem, _PLACEMENTS[(c, m)], sm))
    return tuple(out)


_NAMES_40 = ("1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb")
_NAMES_80 = ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb")
_NAMES_141 = ("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb")

CATALOGUE: dict[str, GpuSpec] = {
    "V100-16GB": GpuSpec(
        "V100-16GB", 80, 16_384, 900.0, 15.7, 125.0, 6.0, 1530, "SXM2", 3.06
    ),
    "A100-40GB": GpuSpec(
        "A100-40GB", 108, 40_960, 1555.0, 19.5, 312.0, 40.0, 1410, "SXM4", 4.10,
        _mig(_NAMES_40, 40_960, 14),
    ),
    "A100-80GB": GpuSpec(
        "A100-80GB", 108, 81_920, 2039.0, 19.5, 312.0, 40.0, 1410, "SXM4", 5.12,
        _mig(_NAMES_80, 81_920, 14),
    ),
    "H100": GpuSpec(
        "H100", 132, 81_920, 3350.0, 67.0, 989.0, 50.0, 1980, "SXM5", 12.29,
        _mig(_NAMES_80, 81_920, None),
    ),
    "H100-PCIe": GpuSpec(
        "H100-PCIe", 114, 81_920, 2000.0, 51.0, 756.0, 50.0, 1755, "PCIe", None,
        _mig(_NAMES_80, 81_920, None),
    ),
    "H200": GpuSpec(
        "H200", 132, 144_384, 4800.0, 67.0, 989.0, 50.0, 1980, "SXM", None,
        _mig(_NAMES_141, 144_384, None),
    ),
}  # fmt: skip
"""Every GPU type hasim knows, by canonical name."""

ALIASES: dict[str, str] = {
    "V100": "V100-16GB",
    "V100-SXM2-16GB": "V100-16GB",
    "A100": "A100-40GB",
    "A100-SXM4-40GB": "A100-40GB",
    "A100-SXM4-80GB": "A100-80GB",
    "H100-80GB": "H100",
    "H100-SXM": "H100",
    "H100-SXM5": "H100",
    "H100-SXM5-80GB": "H100",
    "H100-PCIE-80GB": "H100-PCIe",
    "H200-141GB": "H200",
}
"""Other spellings (upper case) -> canonical name."""


def known_gpus() -> list[str]:
    """Canonical names of every GPU in the catalogue."""
    return list(CATALOGUE)


def canonical_gpu(name: str) -> str:
    """The canonical name of ``name`` (case-insensitive, aliases resolved) or InputError."""
    if not isinstance(name, str):
        raise InputError(f"GPU {name!r}", expected="a GPU name string")
    key = name.strip().upper().replace(" ", "-").replace("_", "-")
    for canon in CATALOGUE:
        if canon.upper() == key:
            return canon
    if key in ALIASES:
        return ALIASES[key]
    raise InputError(f"unknown GPU {name!r}", expected="one of " + ", ".join(CATALOGUE))


def gpu_spec(name: str) -> GpuSpec:
    """The catalogue entry of ``name`` (any accepted spelling)."""
    return CATALOGUE[canonical_gpu(name)]


def mig_layout_fits(gpu: str | GpuSpec, layout: list[tuple[str, int]]) -> bool:
    """True when MIG instances ``[(profile name, start slice), ...]`` can coexist on
    ``gpu``: each start is an allowed placement, slice ranges are disjoint and compute
    slices sum to at most 7."""
    spec = gpu if isinstance(gpu, GpuSpec) else gpu_spec(gpu)
    used: set[int] = set()
    compute = 0
    for name, start in layout:
        p = spec.mig_profile(name)
        if start not in p.placements:
            return False
        slots = set(p.slots(start))
        if used & slots:
            return False
        used |= slots
        compute += p.compute_slices
    return compute <= MIG_COMPUTE_SLICES
