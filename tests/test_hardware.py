"""The hardware catalogue: one spelling of GPU names, datasheet figures, MIG profiles."""

from __future__ import annotations

import pytest

from hasim import hardware
from hasim.cluster.gpu import gpu_type
from hasim.errors import InputError
from hasim.hardware import canonical_gpu, gpu_spec, mig_layout_fits
from hasim.perf.offline.features import gpu_features


def test_names_and_aliases() -> None:
    assert canonical_gpu("v100") == "V100-16GB"
    assert canonical_gpu("A100") == "A100-40GB"
    assert canonical_gpu("a100_80gb") == "A100-80GB"
    assert canonical_gpu("H100-SXM5-80GB") == "H100"
    with pytest.raises(InputError, match="unknown GPU 'TPU'"):
        canonical_gpu("TPU")


def test_one_source_for_every_layer() -> None:
    for name in hardware.known_gpus():
        spec = gpu_spec(name)
        assert gpu_type(name) is spec  # the cluster reads the catalogue
        f = gpu_features(name)  # and so does the perf layer
        assert f["sm_count"] == spec.sm_count
        assert f["memory_gb"] == pytest.approx(spec.memory_mb / 1024)
        assert f["mem_bandwidth_gbs"] == spec.mem_bandwidth_gbs
    assert gpu_type("V100").memory_mb == 16_384 and gpu_type("V100").price_per_hour == 3.06


def test_a100_mig_profiles() -> None:
    a40 = gpu_spec("A100-40GB")
    names = [p.name for p in a40.mig]
    assert names == ["1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]
    p = a40.mig_profile("3g.20gb")
    assert (p.profile_id, p.compute_slices, p.memory_slices) == (9, 3, 4)
    assert p.placements == (0, 4) and p.memory_mb == 20_480 and p.sm_count == 42
    assert a40.mig_profile(19).name == "1g.5gb"
    assert a40.mig_profile("1g.5gb").placements == (0, 1, 2, 3, 4, 5, 6)
    assert a40.mig_profile("7g.40gb").sm_fraction(a40) == pytest.approx(98 / 108)
    a80 = gpu_spec("A100-80GB")
    assert [p.name for p in a80.mig][0] == "1g.10gb" and a80.mig_profile("7g.80gb").sm_count == 98
    h100 = gpu_spec("H100")
    assert h100.mig_profile("2g.20gb").sm_fraction(h100) == pytest.approx(2 / 7)
    assert gpu_spec("V100").mig == () and gpu_spec("V100").mig_max_instances == 0
    with pytest.raises(InputError, match="no MIG"):
        gpu_spec("V100").mig_profile("1g.5gb")
    with pytest.raises(InputError, match="unknown MIG profile"):
        a40.mig_profile("1g.10gb.x")


def test_mig_layouts() -> None:
    assert mig_layout_fits("A100-40GB", [("4g.20gb", 0), ("2g.10gb", 4), ("1g.5gb", 6)])
    assert mig_layout_fits("A100-40GB", [("3g.20gb", 0), ("3g.20gb", 4)])
    assert mig_layout_fits("A100-40GB", [("1g.5gb", s) for s in range(7)])
    assert not mig_layout_fits("A100-40GB", [("4g.20gb", 0), ("3g.20gb", 0)])  # overlap
    assert not mig_layout_fits("A100-40GB", [("2g.10gb", 6)])  # not a placement
    assert not mig_layout_fits("A100-40GB", [("1g.5gb", 7)])
    assert not mig_layout_fits("A100-80GB", [("7g.80gb", 0), ("1g.10gb", 0)])


def test_unknown_price_is_a_clear_error() -> None:
    import hasim

    with pytest.raises(InputError, match="no price for H200"):
        hasim.run(["cluster.gpu=H200", "perf=synthetic", "workload.duration=5",
                   "output.write=false", "output.quiet=true", "sim.progress=false"])  # fmt: skip
