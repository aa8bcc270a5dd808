"""The bulk journal: which rows are finished, so a re-run does only the rest.

SQLite (standard library) in WAL mode, one transaction per finished call. With
``synchronous=NORMAL`` a committed transaction survives the process being killed at any instant
(SIGKILL included); only a power loss can take the last ones back, and then those rows are
simply done again. The rows that rode in one merged call are recorded in one transaction.

**Order on resume.** A row journaled ``ok`` or ``failed`` (refused for good) is finished. Every
other row is sent again: one with no record (never read, in flight at a crash, applied but not
journaled because the journal failed) or one recorded ``retry`` (its retries ran out, or the
quota could not fit it in its deadline). Re-sending an older row alone could overwrite a newer
value, so :class:`~aiocognito._bulk.BulkUpdate` also re-sends, after it, every later row of the
same user that had succeeded (see :mod:`aiocognito._bulk`). The journal only answers "what
happened to row N"; the ordering rule lives with the rows.

**One run at a time.** A journal is opened under an exclusive ``flock`` on a sidecar file,
``JOURNAL.lock``, which records the holder's pid for the message a second run gets
(:class:`JournalLockedError`). The operating system drops the lock when the process ends,
however it ends, so a crashed run never blocks its resume. The lock file is left in place:
removing it would let a waiting run lock a file nobody else sees.

**Failures.** Any SQLite error (read-only file, disk full, a lock held by another program,
a corrupt file) becomes :class:`JournalWriteError`, naming the file and the cause. After a write
fails the journal records nothing more: the rows from then on are sent again on resume.

**What the file reveals.** Per row: its index, the username (or ``token`` for token rows), the
status, the error code and the error message (scrubbed of secrets, as every aiocognito message
is), the attempts, and a fingerprint. With a key (``bulk_update(..., journal_key=...)``; the
command line uses the input file's SHA-256, which the journal does not store) the fingerprint is
an HMAC-SHA-256 of the whole row, values and client metadata included, and cannot be checked
against guessed values without the key. Without a key the fingerprint covers only what the
journal shows anyway: the operation, the pool, the user and the attribute *names*, never
values, tokens or metadata. Then a resume against an input whose values changed is not
detected; one whose users or attribute names changed still is. ``input_id`` is stored as a
SHA-256 digest, never as given.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import hmac
import json
import os
import sqlite3
import sys
from collections.abc import Iterable

from attrs import frozen

from ._errors import JournalLockedError, JournalMismatchError, JournalWriteError

__all__ = ["FINISHED", "Journal", "JournalRecord", "RowStatus", "fingerprint"]

#: The journal's format: fingerprints are keyed (or value-free) from version 2 on.
FORMAT = "2"
#: Seconds SQLite waits for a lock another program holds before the write fails.
BUSY_TIMEOUT = 5.0
_KEY_CHECK = b"aiocognito journal key check"


class RowStatus(enum.StrEnum):
    """How a row ended, as the journal stores it."""

    OK = "ok"  #: applied; a resume skips it (unless an earlier row for its user is re-sent)
    FAILED = "failed"  #: refused for good; a resume skips it
    RETRY = "retry"  #: not finished (retries ran out, never sent); a resume sends it again


#: Statuses that mean "finished": a re-run skips these rows.
FINISHED = (RowStatus.OK, RowStatus.FAILED)


@frozen(kw_only=True)
class JournalRecord:
    """One row as the journal remembers it."""

    index: int
    fingerprint: str
    status: RowStatus
    code: str | None
    message: str | None
    attempts: int
    user: str


def _connect(path: str) -> sqlite3.Connection:
    """Open the SQLite file (a seam for tests that inject storage faults)."""
    return sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
    )


class Journal:
    """A journal file, locked for one run; opened by a bulk run, closed when it ends.

    Args:
        path: The SQLite file; created (mode 0600) if missing.
        key: The secret that keys row fingerprints, or ``None`` for value-free fingerprints.
        input_id: Identifies the input (e.g. a file's digest); a journal written for another
            one is refused. Only its SHA-256 is stored.

    Raises:
        JournalLockedError: Another run holds the journal.
        JournalWriteError: The file cannot be opened or set up.
        JournalMismatchError: The journal was written for another input, with another key, or
            in an older format.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: bytes | None = None,
        input_id: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self._key = key
        self._input = (
            None
            if input_id is None
            else hashlib.sha256(b"aiocognito input\0" + input_id.encode()).hexdigest()
        )
        self.broken = False
        self._lock = _lock(self.path)
        try:
            self._db = self._open()
        except BaseException:
            os.close(self._lock)
            raise

    def _open(self) -> sqlite3.Connection:
        try:
            # Create the file private before SQLite does: its -wal and -shm files copy its mode.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            db = _connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise JournalWriteError(self.path, _cause(exc)) from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS rows ("
                " idx INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, status TEXT NOT NULL,"
                " code TEXT, message TEXT, attempts INTEGER NOT NULL, user TEXT NOT NULL)"
            )
            self._check_meta(db)
        except sqlite3.Error as exc:
            db.close()
            raise JournalWriteError(self.path, _cause(exc)) from exc
        except BaseException:
            db.close()
            raise
        return db

    def _check_meta(self, db: sqlite3.Connection) -> None:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        used = db.execute("SELECT 1 FROM rows LIMIT 1").fetchone() is not None
        if meta.get("format") != FORMAT and (used or meta):
            raise JournalMismatchError(
                f"journal {self.path} was written by an older aiocognito; finish that run with "
                "the version that started it, or use a new journal file"
            )
        if self._input is not None and meta.get("input", self._input) != self._input:
            raise JournalMismatchError(
                f"journal {self.path} was written for a different input; use a new journal "
                "file, or the input it was written for"
            )
        check = (
            "none"
            if self._key is None
            else hmac.new(self._key, _KEY_CHECK, hashlib.sha256).hexdigest()[:32]
        )
        if "key" in meta and meta["key"] != check:
            raise JournalMismatchError(
                f"journal {self.path} was written with a different journal key (from the "
                "command line: for a different input file); use a new journal file, or the "
                "key and input it was written with"
            )
        with db:
            db.execute("BEGIN")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('key', ?)", (check,))
            if self._input is not None:
                db.execute("INSERT OR IGNORE INTO meta VALUES ('input', ?)", (self._input,))

    # ----------------------------------------------------------------------------------------
    # Fingerprints

    def fingerprint(self, *parts: object, secret: object = None) -> str:
        """This journal's digest of a row; see :func:`fingerprint`."""
        return fingerprint(self._key, *parts, secret=secret)

    # ----------------------------------------------------------------------------------------
    # Reading and writing

    def last_index(self) -> int:
        """The highest row index recorded, or -1 for an empty journal."""
        try:
            row = self._db.execute("SELECT MAX(idx) FROM rows").fetchone()
        except sqlite3.Error as exc:
            raise JournalWriteError(self.path, _cause(exc)) from exc
        return -1 if row is None or row[0] is None else int(row[0])

    def lookup(self, index: int, digest: str) -> JournalRecord | None:
        """The record of row ``index``, if any; refuse if it was recorded for a different row.

        Raises:
            JournalMismatchError: The record's fingerprint is not ``digest``.
            JournalWriteError: The file cannot be read.
        """
        try:
            row = self._db.execute(
                "SELECT idx, fingerprint, status, code, message, attempts, user"
                " FROM rows WHERE idx = ?",
                (index,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise JournalWriteError(self.path, _cause(exc)) from exc
        if row is None:
            return None
        idx, fingerprint, status, code, message, attempts, user = row
        record = JournalRecord(
            index=idx,
            fingerprint=fingerprint,
            status=RowStatus(status),
            code=code,
            message=message,
            attempts=attempts,
            user=user,
        )
        if record.fingerprint != digest:
            raise JournalMismatchError(
                f"journal {self.path} was written for a different input: row {index} differs "
                "from the row it recorded; use a new journal file"
            )
        return record

    def record(self, records: Iterable[JournalRecord]) -> None:
        """Record rows in one transaction.

        Raises:
            JournalWriteError: The write failed; the journal records nothing more after it.
        """
        rows = [
            (r.index, r.fingerprint, r.status.value, r.code, r.message, r.attempts, r.user)
            for r in records
        ]
        if not rows or self.broken:
            return
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                )
        except sqlite3.Error as exc:
            self.broken = True
            raise JournalWriteError(self.path, _cause(exc)) from exc

    def close(self) -> None:
        """Close the file and release the lock; everything recorded is already committed."""
        try:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        finally:
            os.close(self._lock)  # releases the flock


def fingerprint(key: bytes | None, *parts: object, secret: object = None) -> str:
    """A stable digest of a row: of ``parts``, and of ``secret`` too when keyed.

    ``secret`` holds what only a keyed fingerprint may cover (values, client metadata, a bad
    row's text). Without a key it is left out, so that the journal alone confirms nothing it
    does not already show.
    """
    if key is None:
        return hashlib.sha256(_canonical(parts)).hexdigest()[:32]
    return hmac.new(key, _canonical([parts, secret]), hashlib.sha256).hexdigest()[:32]


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _lock(path: str) -> int:
    """Take the journal's run lock; return the lock file's descriptor (closing it unlocks)."""
    try:
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise JournalWriteError(path, _cause(exc)) from exc
    try:
        locked = _try_lock(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        if locked:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        else:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError as exc:
        os.close(fd)
        raise JournalWriteError(path, _cause(exc)) from exc
    if not locked:
        os.close(fd)
        raise JournalLockedError(path, int(holder) if holder.isdigit() else None)
    return fd


if sys.platform == "win32":  # pragma: no cover - the tests run on POSIX
    import msvcrt

    def _try_lock(fd: int) -> bool:
        # Lock a byte past the pid, so the pid stays readable by a refused run.
        os.lseek(fd, 64, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
