"""Where the persistent XLA compilation cache goes, and how to turn it off."""

from pathlib import Path

import pytest

from parafit.engines.jax_cache import cache_directory


def test_cache_directory_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PARAFIT_COMPILATION_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_directory() == tmp_path / "parafit" / "xla"
    monkeypatch.setenv("PARAFIT_COMPILATION_CACHE", str(tmp_path / "mine"))
    assert cache_directory() == tmp_path / "mine"
    for off in ("off", "0", "", "False"):
        monkeypatch.setenv("PARAFIT_COMPILATION_CACHE", off)
        assert cache_directory() is None


def test_memory_map_guard_reads_the_kernel_limit() -> None:
    import sys

    from parafit.engines.jax_cache import memory_maps_exhausted

    if not sys.platform.startswith("linux"):
        assert memory_maps_exhausted() is False
        return
    assert memory_maps_exhausted(fraction=1e-9) is True
    assert memory_maps_exhausted(fraction=1.0) is False


def test_engine_recovers_after_dropping_compiled_functions(
    shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the memory-map guard fires, the ReaxFF engine clears JAX's caches and
    recompiles; results are unchanged."""
    import numpy as np
    from ase.io import read

    import parafit.engines.reaxff.engine as engine_module
    from parafit.engines.reaxff.engine import ReaxFFEngine
    from parafit.jobs import Job

    root = shared_data / "reaxff-golden" / "ammonia"
    atoms = read(root / "geo.pdb")
    atoms.pbc = False
    engine = ReaxFFEngine(root / "ffield", max_chunk=1)
    iface = engine.default_interface()
    fn = engine.setup([Job("nh3", atoms)], iface.names)
    first = fn(iface.values[None])["nh3"]
    monkeypatch.setattr(engine_module, "memory_maps_exhausted", lambda: True)
    again = fn(iface.values[None])["nh3"]
    np.testing.assert_array_equal(first.energy, again.energy)
    np.testing.assert_array_equal(first.forces, again.forces)
