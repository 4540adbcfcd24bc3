"""Crash-safe file writes: snapshots by temp-file + rename, logs by fsync'd appends.

A reader of an append-only log ignores a last line without a newline (what a write
cut short by a kill leaves), as Optuna's journal storage does.
"""

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "append_lines",
    "read_complete_lines",
    "write_bytes_atomic",
    "write_text_atomic",
]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Text version of :func:`write_bytes_atomic` (UTF-8)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def append_lines(path: str | Path, lines: Iterable[str], *, sync: bool = True) -> None:
    """Append lines (each without its newline) in one write, then flush and fsync."""
    text = "".join(line + "\n" for line in lines)
    if not text:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def read_complete_lines(path: str | Path) -> list[str]:
    """Lines of a log file, dropping an unterminated last line."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    return lines[:-1]  # the piece after the last newline is empty or incomplete
