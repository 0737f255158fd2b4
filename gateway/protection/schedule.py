"""The retention schedule in an embedded SQLite file: which retained topic expires when.

Synchronous on purpose: the sweeper runs every call in a worker thread
(``asyncio.to_thread``). One connection, behind a lock: a call left running by a
cancelled task must not overlap the next one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS retained_expiry (
    topic TEXT PRIMARY KEY,
    org TEXT,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS retained_expiry_due ON retained_expiry (expires_at);
"""


@dataclass(frozen=True, slots=True)
class Due:
    """A retained message whose time is up."""

    topic: str
    org: str | None
    expires_at: float


class Schedule:
    """One SQLite file in WAL mode (readers never block the writer; a crash loses at
    most the transaction in progress)."""

    def __init__(self, path: Path | str) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(p, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable across application crashes; only a power loss
        # may lose the last commits, which a retention schedule can afford.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def apply(self, changes: Iterable[tuple[str, str | None, float | None]]) -> None:
        """Upsert (topic, org, expires_at) rows; an ``expires_at`` of None removes the topic."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            for topic, org, expires_at in changes:
                if expires_at is None:
                    self._db.execute("DELETE FROM retained_expiry WHERE topic = ?", (topic,))
                else:
                    self._db.execute(
                        "INSERT INTO retained_expiry (topic, org, expires_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (topic) DO UPDATE SET org = excluded.org,"
                        " expires_at = excluded.expires_at",
                        (topic, org, expires_at),
                    )

    def due(self, now: float, limit: int = 500) -> list[Due]:
        with self._lock:
            rows = self._db.execute(
                "SELECT topic, org, expires_at FROM retained_expiry WHERE expires_at <= ?"
                " ORDER BY expires_at LIMIT ?",
                (now, limit),
            ).fetchall()
        return [Due(t, o, e) for t, o, e in rows]

    def done(self, cleared: Iterable[Due]) -> None:
        """Remove cleared rows, unless a newer retained publish rescheduled the topic."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "DELETE FROM retained_expiry WHERE topic = ? AND expires_at = ?",
                [(d.topic, d.expires_at) for d in cleared],
            )

    def pending(self) -> list[Due]:
        with self._lock:
            rows = self._db.execute(
                "SELECT topic, org, expires_at FROM retained_expiry ORDER BY expires_at"
            ).fetchall()
        return [Due(t, o, e) for t, o, e in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
