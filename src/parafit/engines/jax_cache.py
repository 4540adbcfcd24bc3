"""A persistent XLA compilation cache for parafit's JAX engines.

Compiling a ReaxFF training set takes tens of seconds to minutes on a CPU; the same
functions are compiled again by every run on the same data. JAX can keep compiled
executables on disk; :func:`enable_compilation_cache` turns that on once per process,
so a second run (or a second objective in one run) loads them in a fraction of the
time.

Where: ``$PARAFIT_COMPILATION_CACHE`` if set (``off``, ``0`` or an empty value disables
it), else ``$XDG_CACHE_HOME/parafit/xla`` (``~/.cache/parafit/xla``). A cache directory
already configured through JAX (``jax_compilation_cache_dir``) is left alone. Entries
are a few MB each; delete the directory to reclaim the space.
"""

import logging
import os
from pathlib import Path

import jax

__all__ = ["cache_directory", "enable_compilation_cache", "memory_maps_exhausted"]

logger = logging.getLogger(__name__)

_DISABLED = {"", "0", "off", "false", "no"}


def cache_directory() -> Path | None:
    """The directory parafit uses for compiled executables, or None when disabled."""
    value = os.environ.get("PARAFIT_COMPILATION_CACHE")
    if value is not None:
        return None if value.strip().lower() in _DISABLED else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "parafit" / "xla"


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache (idempotent; never raises).

    Returns:
        The cache directory in use, or None if caching is off or unavailable.
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    directory = cache_directory()
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(directory))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except (OSError, AttributeError, ValueError) as err:  # read-only home, old JAX
        logger.info("XLA compilation cache not enabled: %s", err)
        return None
    return directory


def _map_count() -> int | None:
    try:
        with open("/proc/self/maps", "rb") as fh:
            return fh.read().count(b"\n")
    except OSError:
        return None


def _max_map_count() -> int | None:
    try:
        return int(Path("/proc/sys/vm/max_map_count").read_text())
    except (OSError, ValueError):
        return None


def memory_maps_exhausted(fraction: float = 0.7) -> bool:
    """Whether this process uses more than ``fraction`` of the kernel's memory-map
    limit (Linux; False elsewhere).

    Every executable XLA compiles on a CPU holds ~1000 memory maps; a process that
    compiles ~60 functions reaches ``vm.max_map_count`` (65530 by default) and dies in
    LLVM with "Cannot allocate memory" although RAM is free. Engines that compile
    many shapes call this and, when it is True, drop their compiled functions and
    ``jax.clear_caches()`` (with the persistent cache, recompiling is a disk read).
    """
    limit = _max_map_count()
    if limit is None:
        return False
    count = _map_count()
    return count is not None and count > fraction * limit
