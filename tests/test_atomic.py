"""Crash-safe writes: whole files, usual permissions, no temp files left."""

import os
from pathlib import Path

from parafit._atomic import write_bytes_atomic, write_text_atomic


def test_atomic_write_gives_the_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_bytes_atomic(tmp_path / "b.bin", b"y")
        assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    assert os.umask(old) == old  # restored
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_atomic_write_replaces_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.txt"
    write_text_atomic(path, "long old content\n" * 100)
    write_text_atomic(path, "new")
    assert path.read_text() == "new"
