"""The bulk journal: which rows are finished, so a re-run does only the rest.

SQLite (standard library) in WAL mode, one transaction per finished call. With
``synchronous=NORMAL`` a committed transaction survives the process being killed at any instant
(SIGKILL included); only a power loss can take the last ones back, and then those rows are
simply done again. A row that rode in a merged call is recorded in the same transaction as the
others, so a resume never re-applies an older change after a newer one for the same user.

Each row is stored with a fingerprint of its content. On resume, a finished row whose
fingerprint differs means the journal belongs to another input: the run is refused.
Tokens and attribute values are never stored: only the fingerprint, the outcome, the error
code and the (scrubbed) message.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable

from attrs import frozen

from ._errors import JournalMismatchError

__all__ = ["Journal", "JournalRecord", "fingerprint"]

#: Statuses that mean "finished": a re-run skips these rows.
FINISHED = ("ok", "failed")


@frozen
class JournalRecord:
    """One row as the journal remembers it."""

    index: int
    fingerprint: str
    status: str  # "ok", "failed" (permanent) or "retry" (not finished)
    code: str | None
    message: str | None
    attempts: int
    user: str


def fingerprint(*parts: object) -> str:
    """A short, stable digest of a row's content (never reversible to its values)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Journal:
    """A journal file; opened by a bulk run, closed when it ends."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        # Created private before SQLite sees it: SQLite gives the -wal and -shm files the
        # database file's mode, so this one mode covers all three, whatever the umask.
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rows ("
            " idx INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, status TEXT NOT NULL,"
            " code TEXT, message TEXT, attempts INTEGER NOT NULL, user TEXT NOT NULL)"
        )

    def bind_input(self, input_id: str | None) -> None:
        """Tie the journal to one input (e.g. a file's digest); refuse another one."""
        if input_id is None:
            return
        row = self._db.execute("SELECT value FROM meta WHERE key = 'input'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('input', ?)", (input_id,))
        elif row[0] != input_id:
            raise JournalMismatchError(
                f"journal {self.path} was written for a different input; use a new journal "
                "file, or the input it was written for"
            )

    def lookup(self, index: int) -> JournalRecord | None:
        """The record of row ``index``, if any."""
        row = self._db.execute(
            "SELECT idx, fingerprint, status, code, message, attempts, user"
            " FROM rows WHERE idx = ?",
            (index,),
        ).fetchone()
        return None if row is None else JournalRecord(*row)

    def finished(self, index: int, digest: str) -> JournalRecord | None:
        """The record if row ``index`` is finished; refuse if it was a different row."""
        record = self.lookup(index)
        if record is None or record.status not in FINISHED:
            return None
        if record.fingerprint != digest:
            raise JournalMismatchError(
                f"journal {self.path} was written for a different input: row {index} differs "
                "from the row it recorded; use a new journal file"
            )
        return record

    def record(self, records: Iterable[JournalRecord]) -> None:
        """Record rows in one transaction."""
        rows = [
            (r.index, r.fingerprint, r.status, r.code, r.message, r.attempts, r.user)
            for r in records
        ]
        if not rows:
            return
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        """Close the file; everything recorded is already committed."""
        self._db.close()
