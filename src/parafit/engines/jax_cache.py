"""A persistent XLA compilation cache for parafit's JAX engines.

Compiling a ReaxFF training set takes tens of seconds to minutes on a CPU; the same
functions are compiled again by every run on the same data. JAX can keep compiled
executables on disk; :func:`enable_compilation_cache` turns that on once per process,
so a second run (or a second objective in one run) loads them in a fraction of the
time.

Where: ``$PARAFIT_COMPILATION_CACHE`` if set (``off``, ``0`` or an empty value disables
it), else ``$XDG_CACHE_HOME/parafit/xla`` (``~/.cache/parafit/xla``). A cache directory
already configured through JAX (``jax_compilation_cache_dir``) is left alone. The cache
is capped at 2 GB (JAX evicts the least recently used entries).
"""

import logging
import os
from pathlib import Path

import jax

__all__ = ["cache_directory", "enable_compilation_cache"]

logger = logging.getLogger(__name__)

_MAX_BYTES = 2 * 1024**3
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
        jax.config.update("jax_compilation_cache_max_size", _MAX_BYTES)
    except (OSError, AttributeError, ValueError) as err:  # read-only home, old JAX
        logger.info("XLA compilation cache not enabled: %s", err)
        return None
    return directory
