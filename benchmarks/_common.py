"""Helpers shared by the benchmark scripts: provenance of a measurement."""

import os
import platform
import subprocess
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "cpu.jsonl"


def git_commit() -> str | None:
    """The checked-out commit, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def machine(**extra: object) -> dict[str, object]:
    """Processor, platform, cores, load and library versions (plus ``extra``)."""
    return {
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        **extra,
    }
