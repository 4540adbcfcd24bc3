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
