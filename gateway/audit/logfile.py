"""The append-only JSON-lines audit file with size-based rotation.

Rotation follows ``logging.handlers.RotatingFileHandler``'s naming (``audit.log`` is
current, ``audit.log.1`` the newest backup, ``audit.log.N`` the oldest), so the usual
log shippers pick it up, but it rotates on line boundaries only and never truncates a
file it has not renamed first. With ``backups == 0`` the file never rotates: a
compliance log is not thrown away to respect a size limit nobody asked a backup for.
This object is used by one thread (the audit writer); it is not thread-safe.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO


class RotatingJsonLog:
    """Appends newline-terminated lines, rotating before a file would exceed max_bytes."""

    def __init__(self, path: str | Path, max_bytes: int, backups: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - held for the log's life
        self._size = self._file.tell()

    def backup_path(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def write_lines(self, lines: Iterable[bytes]) -> None:
        """Write ``lines`` (each ending in b"\\n"), rotating between lines when needed."""
        chunk: list[bytes] = []
        chunk_size = 0
        for line in lines:
            n = len(line)
            if self.backups > 0 and self._size + chunk_size + n > self.max_bytes:
                if chunk:
                    self._file.write(b"".join(chunk))
                    self._size += chunk_size
                    chunk, chunk_size = [], 0
                # A line longer than max_bytes still gets a file of its own.
                if self._size > 0:
                    self._rotate()
            chunk.append(line)
            chunk_size += n
        if chunk:
            self._file.write(b"".join(chunk))
            self._size += chunk_size

    def flush(self, fsync: bool = False) -> None:
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Flush, fsync and close; a failing disk still ends with the file closed (the
        error goes to the caller, which has already counted what could not be written)."""
        if self._file.closed:
            return
        try:
            self.flush(fsync=True)
        finally:
            with contextlib.suppress(OSError):
                self._file.close()

    def _rotate(self) -> None:
        # The old file is complete on disk before it is renamed.
        self.flush(fsync=True)
        self._file.close()
        for n in range(self.backups - 1, 0, -1):
            src = self.backup_path(n)
            if src.exists():
                os.replace(src, self.backup_path(n + 1))
        os.replace(self.path, self.backup_path(1))
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0
