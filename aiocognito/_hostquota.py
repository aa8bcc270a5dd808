"""The fleet's bucket in a directory: processes on one host share a quota with no Redis.

``Limits(shared_quota_url="file:///run/aiocognito")`` turns the fleet mode on for the
processes of one host (a web server's workers, a migration beside them) with nothing to run:
the fleet's state lives in a small file per quota group and category in that directory, and
each draw reads, updates and writes it under an exclusive advisory lock (``flock``). The
arithmetic is :data:`aiocognito._fleet._TAKE`'s, line for line (:func:`take`): the same GCRA
bucket, judge election, counters, ceiling, process count and debt. So everything
:mod:`aiocognito._fleet` says of the fleet holds here too, and the tests check the two give the
same answers to the same draws. Only what a store must provide differs:

* **Time** is the host's clock (``time.time()``), which every process on it shares.
* **Atomicity.** The lock is held for one draw's read and write: about 0.2 ms on a tmpfs, a
  few ms on a loaded disk, from the event loop (so: a local directory, never a network file
  system). The state is written to a temporary file and renamed over the old one, so a
  process killed mid-write leaves the state as it was (its temporary file is swept a minute
  later); the kernel drops a dead process's lock. A lock file removed under running processes
  (a ``/tmp`` cleaner) is noticed after locking, and the new one is locked instead. A forked
  child opens its own lock files: its parent's are shared open files, whose locks exclude
  neither.
* **Failing.** A draw waits for the lock without blocking the event loop, polling; one that
  cannot have it within the fleet's budget is slow, as a slow Redis is (a process stopped
  while holding it: ``SIGSTOP``, a debugger). A directory that cannot be created or written is
  unreachable: the limiter falls back to its local limiter, logs one WARNING, and retries.
* **Expiry.** State untouched for ``KEY_TTL`` seconds is dropped on the next draw, as Redis
  drops idle keys.
* **Permissions.** The directory is created ``0700`` and the files ``0600``: they hold rates,
  counters and process names (host, pid), nothing secret, but no other user's process has any
  business pacing this user's quota. A directory that another user owns or may write to is
  refused (:class:`QuotaDirectoryNotPrivateError`, a fall back), and files are opened never
  through a link and never into a FIFO: planted state could stop the calls (a bucket due in a
  thousand years) or let them loose (a rate of a billion), a planted link make this process
  create files elsewhere, a FIFO block its event loop. State of another shape (another
  version's, or damaged) is a new bucket. Only processes of the same user on the same host
  share; hosts share through Redis.

**Sharing by default.** With no URL configured, ``Limits()`` shares through
``aiocognito-<uid>`` in the temporary directory, and only while more than one process uses a
quota: each marks itself with a :class:`Presence` (a record lock on a ``.present`` file beside
the bucket's), and a process alone paces itself with no file I/O (see :mod:`aiocognito._fleet`).

Needs ``fcntl``: POSIX systems only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import itertools
import json
import math
import os
import stat
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ._config import quota_directory
from ._errors import ConfigurationError
from ._fleet import EPOCH, KEY_TTL

__all__ = ["HostStore", "Presence", "take"]

LOCK_POLL = 0.0005  # seconds between tries for a lock another process holds
LOCK_BUDGET = 1.0  # a draw that cannot have the lock in this long fails (the store is stuck)
STATE_VERSION = 1  # a state file of another shape is a new bucket
STATE_LIMIT = 1 << 20  # a state file larger than this is not ours: a new bucket


def _num(x: float) -> str:
    """A float as the script writes one: 17 significant digits, so it reads back exactly."""
    return f"{x:.17g}"


def take(state: dict[str, Any], args: Sequence[Any], now: float) -> list[Any]:  # noqa: PLR0915
    """One draw, as :data:`aiocognito._fleet._TAKE` does it in Redis; updates ``state``.

    ``state`` holds the bucket's hash (``"bucket"``) and the processes' last draws
    (``"processes"``); ``args`` is the script's ARGV; ``now`` is used unless ARGV 15 gives one.
    Returns what the script returns, in the types redis-py gives (integers, and strings).
    """
    a = [str(x) for x in args]
    if a[14] != "":
        now = float(a[14])
    h: dict[str, Any] = state.setdefault("bucket", {})
    procs: dict[str, float] = state.setdefault("processes", {})
    member = a[0]
    answers, throttled = int(float(a[3])), int(float(a[4]))
    if answers > 0:
        h["answers"] = int(h.get("answers", 0)) + answers
    if throttled > 0:
        h["throttled"] = int(h.get("throttled", 0)) + throttled

    procs[member] = now
    horizon = now - float(a[13])
    for name in [m for m, at in procs.items() if at <= horizon]:
        del procs[name]
    processes = len(procs)

    judge = h.get("judge")
    judge_until = float(h.get("judge_until", 0.0))
    judges = 0
    stored_state = ""
    if judge == member or judge is None or judge_until < now:
        judges = 1
        if judge != member:
            h["judge"], h["pulled_at"] = member, now
            stored_state = str(h.get("state", ""))
        else:
            if a[5] != "":
                h["rate"] = float(a[5])
            if a[15] != "":
                h["state"] = a[15]

    if "rate" not in h:
        h["rate"] = float(a[6])
    rate = float(h["rate"])

    ceiling: float | None = None
    if "ceiling" in h and float(h.get("ceiling_until", 0.0)) >= now:
        ceiling = float(h["ceiling"])
    if a[7] != "":
        mine = float(a[7])
        if ceiling is None or mine <= ceiling or h.get("ceiling_by") == member:
            ceiling = mine
            h["ceiling"], h["ceiling_by"] = mine, member
            h["ceiling_until"] = now + float(a[16])
    if ceiling is not None:
        rate = min(rate, ceiling)

    if judges == 1:
        lease = max(float(a[10]), 3 * processes / rate)
        h["judge_until"] = now + lease

    period = 1.0 / rate
    capacity = max(1.0, rate * float(a[8]))
    limit = capacity
    if a[2] == "1" and capacity >= 2.0:
        reserve = max(1.0, math.floor(capacity * float(a[9]) + 0.5))
        limit = max(1.0, capacity - reserve)
    tat = float(h.get("tat", 0.0))
    debt = min(float(a[17]), capacity)
    if debt > 0:
        tat = max(tat, now - float(a[18])) + debt * period
    tat = max(tat, now)
    if debt > 0:
        h["tat"] = tat
    room = math.floor((now + limit * period - tat) / period + 1e-6)
    wanted = max(1, min(int(float(a[1])), math.floor(limit)))
    granted = max(0, min(wanted, room))
    if granted > 0:
        tat = tat + granted * period
        h["tat"] = tat
        wait = max(0.0, tat + wanted * period - now - limit * period)
    else:
        wait = max(1e-6, tat + wanted * period - now - limit * period)

    pulled, pulled_throttled = -1, 0
    if judges == 1:
        pulled_at = float(h.get("pulled_at", 0.0))
        if now - pulled_at >= float(a[11]):
            pulled = int(h.get("answers", 0))
            pulled_throttled = int(h.get("throttled", 0))
            h["answers"], h["throttled"], h["pulled_at"] = 0, 0, now

    return [
        granted,
        _num(wait),
        _num(rate),
        judges,
        pulled,
        pulled_throttled,
        processes,
        stored_state,
        _num(now),
        _num(ceiling) if ceiling is not None else "",
    ]


class QuotaDirectoryNotPrivateError(OSError):
    """The quota directory is not this user's alone: another user could pace (or stop) it."""


_OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # never through a link, never a FIFO


class HostStore:
    """What :class:`aiocognito._fleet.FleetLimiter` needs of a Redis client, kept in files.

    ``register_script`` returns the draw; ``ping`` checks the directory is usable; ``aclose``
    closes the lock files.
    """

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        try:
            import fcntl  # noqa: F401, PLC0415 - POSIX only
        except ImportError as exc:  # pragma: no cover - not on POSIX
            raise ConfigurationError("a file:// shared quota needs a POSIX system") from exc
        self.directory = quota_directory(url)
        self._clock = clock
        self._locks: dict[str, int] = {}  # bucket key -> its open lock file
        self._named: dict[str, tuple[Path, Path]] = {}  # bucket key -> its two files' paths
        self._pid = os.getpid()  # a forked child must not share its parent's lock files
        self._closed = False

    def _paths(self, key: str) -> tuple[Path, Path]:
        paths = self._named.get(key)
        if paths is None:
            stem = hashlib.sha256(key.encode()).hexdigest()[:24]
            paths = self._named[key] = (
                self.directory / f"{stem}.lock",
                self.directory / f"{stem}.json",
            )
        return paths

    def _private_directory(self) -> None:
        """Make the directory (0700) if missing; refuse one that is not this user's alone.

        A directory another user owns or may write to (``/dev/shm`` itself, a directory made
        0777 in advance) would let that user plant state that stops this process's calls or
        unleashes them, or links that make it create files elsewhere.
        """
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(self.directory)
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            raise QuotaDirectoryNotPrivateError(
                "the shared quota's directory must be a directory of this user's that no one "
                "else may write to"
            )

    def _open(self, path: Path, flags: int) -> int:
        """Open a regular file of this user's, never through a link or into a FIFO."""
        fd = os.open(path, flags | _OPEN, 0o600)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            os.close(fd)
            raise QuotaDirectoryNotPrivateError("the shared quota's files must be this user's")
        return fd

    def _lock_fd(self, key: str) -> int:
        if os.getpid() != self._pid:
            # Forked: the parent's lock files are shared open files, whose locks would not
            # exclude the parent. Close our copies (never unlocking: that would unlock the
            # parent's) and open our own.
            inherited, self._pid, self._locks = self._locks, os.getpid(), {}
            for old in inherited.values():
                with contextlib.suppress(OSError):
                    os.close(old)
        fd = self._locks.get(key)
        if fd is None:
            self._private_directory()
            lock, _ = self._paths(key)
            fd = self._open(lock, os.O_RDWR | os.O_CREAT)
            self._locks[key] = fd
            self._sweep()
        return fd

    def _sweep(self) -> None:
        """Remove temporary files left by processes killed between writing and renaming."""
        stale = time.time() - 60.0
        for leftover in self.directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                if os.lstat(leftover).st_mtime < stale:
                    leftover.unlink()

    def sweep_unused(self, *, limit: int = 1000) -> None:
        """Remove what no process uses any more, so that quota groups used once (a test
        suite's endpoints on random ports) do not pile up: marks nobody holds (a killed
        process's last), and state untouched for ``KEY_TTL`` with its lock file. At most
        ``limit`` files are looked at, once per process and directory (a script that opens a
        client per request must not list the directory each time). A process that opened one
        of them meanwhile finds it gone at its next use (the inode changed) and makes it anew.
        """
        import fcntl  # noqa: PLC0415

        swept = (os.getpid(), self.directory)
        if swept in _SWEPT:
            return
        _SWEPT.add(swept)
        now = time.time()
        try:
            paths = list(itertools.islice(self.directory.iterdir(), limit))
        except OSError:
            return
        for path in paths:
            with contextlib.suppress(OSError):
                if path.suffix == ".json" and os.lstat(path).st_mtime < now - KEY_TTL:
                    lock = self._open(path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT)
                    try:
                        # Under the bucket's lock: a draw that starts on it now waits, then
                        # finds the lock file gone and takes the new one.
                        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        if os.lstat(path).st_mtime < now - KEY_TTL:
                            path.unlink()
                            path.with_suffix(".lock").unlink()
                    finally:
                        os.close(lock)
                elif path.suffix == ".present":
                    with _MARKS_LOCK:
                        if (os.getpid(), path) in _MARKS:
                            continue  # ours: closing a descriptor of it would drop our mark
                        fd = self._open(path, os.O_RDWR)
                        try:
                            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
                            if self._same_file(fd, path):
                                path.unlink()  # nobody holds a mark on it
                        finally:
                            os.close(fd)

    async def _locked(self, key: str) -> int:
        """Take ``key``'s lock, polling so as never to block the event loop."""
        import fcntl  # noqa: PLC0415

        deadline = time.monotonic() + LOCK_BUDGET
        while True:
            if self._closed:
                raise ConnectionError("the shared quota's store is closed")
            fd = self._lock_fd(key)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TimeoutError("the shared quota's lock is held too long") from None
                await asyncio.sleep(LOCK_POLL)
                continue
            if self._same_file(fd, self._paths(key)[0]):
                return fd
            # The lock file was removed (an operator, a /tmp cleaner) or replaced: a lock on
            # it excludes nobody who opened the new one. Open the one in the directory now.
            fcntl.flock(fd, fcntl.LOCK_UN)
            del self._locks[key]
            os.close(fd)

    @staticmethod
    def _same_file(fd: int, path: Path) -> bool:
        try:
            there = os.lstat(path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)

    @contextlib.contextmanager
    def _holding(self, fd: int) -> Iterator[None]:
        import fcntl  # noqa: PLC0415

        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _read(self, path: Path, now: float, ttl: float) -> dict[str, Any]:
        try:
            fd = self._open(path, os.O_RDONLY)
        except FileNotFoundError:
            return {}  # none yet: a new bucket, as lost keys in Redis
        with os.fdopen(fd, "rb") as source:
            data = source.read(STATE_LIMIT + 1)
        try:
            state = json.loads(data) if len(data) <= STATE_LIMIT else None
        except ValueError:
            return {}  # cut off: a new bucket
        if (
            not isinstance(state, dict)
            or state.get("version") != STATE_VERSION
            or not isinstance(state.get("touched"), float)
            or state["touched"] + ttl < now
        ):
            return {}  # another shape (another version), or untouched too long: expired
        return state

    def _write(self, path: Path, state: dict[str, Any]) -> None:
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(state, separators=(",", ":")).encode())
            os.replace(temporary, path)  # replaces a link itself, never what it points to
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    async def _draw(self, keys: Sequence[str], args: Sequence[Any]) -> list[Any]:
        key = keys[0]
        fd = await self._locked(key)
        with self._holding(fd):
            _, path = self._paths(key)
            given = str(args[14])  # tests pass an instant, as to the script
            now = float(given) if given else self._clock() - EPOCH
            state = self._read(path, now, float(args[12]))
            try:
                reply = take(state, args, now)
            except (TypeError, ValueError, KeyError, AttributeError, ZeroDivisionError):
                state = {}  # fields of the wrong shape: start a new bucket, as for a cut file
                reply = take(state, args, now)
            state["version"], state["touched"] = STATE_VERSION, float(reply[8])
            self._write(path, state)
        return reply

    def register_script(self, _script: str) -> Callable[..., Awaitable[list[Any]]]:
        """The draw, called as redis-py's registered script is: ``(keys=..., args=...)``."""

        def run(*, keys: Sequence[str], args: Sequence[Any]) -> Awaitable[list[Any]]:
            return self._draw(keys, args)

        return run

    async def ping(self) -> bool:
        """Check the directory is private and can hold the fleet's files; raises OSError."""
        self._private_directory()
        with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".", suffix=".tmp"):
            return True

    async def aclose(self) -> None:
        """Close the lock files; a draw still waiting for one gives up."""
        self._closed = True
        locks, self._locks = self._locks, {}
        for fd in locks.values():  # in a forked child, copies: closing them unlocks nothing
            with contextlib.suppress(OSError):
                os.close(fd)


class _Mark:
    """This process's one open mark file for a path, shared by every :class:`Presence` on it.

    POSIX record locks belong to the process, and closing *any* descriptor of a file drops
    all of the process's locks on it: so a process keeps one descriptor per mark file, and
    closes it only when the last of its users leaves.
    """

    __slots__ = ("fd", "path", "store", "users")

    def __init__(self, store: HostStore, path: Path) -> None:
        self.store = store
        self.path = path
        self.fd: int | None = None
        self.users = 0

    def file(self) -> int:
        """The open mark file: reopened if it was removed or replaced (a /tmp cleaner)."""
        fd = self.fd
        if fd is not None and not HostStore._same_file(fd, self.path):
            # Our lock on the old file excludes nobody who opened the new one.
            self.fd = None
            with contextlib.suppress(OSError):
                os.close(fd)
            fd = None
        if fd is None:
            self.store._private_directory()
            fd = self.fd = self.store._open(self.path, os.O_RDWR | os.O_CREAT)
        return fd


_SWEPT: set[tuple[int, Path]] = set()  # (pid, directory) swept by this process
_MARKS: dict[tuple[int, Path], _Mark] = {}  # (pid, path): a forked child has marks of its own
_MARKS_LOCK = threading.Lock()  # event loops in several threads may share a mark


class Presence:
    """This process's mark on a quota of this host, and whether another process has one too.

    Every process that uses the quota holds a POSIX record lock (``fcntl``) for reading on the
    first byte of one file beside the bucket's (``<key>.present``). A process is alone if it can
    turn its own lock into a write lock, which another process's read lock forbids; it turns it
    back at once. The kernel drops a process's locks when it exits, however it dies, so there is
    nothing to expire, and a check costs a few system calls.

    Every ``Presence`` on one file in a process (several event loops, several clients) shares
    one descriptor, closed when the last of them closes: closing any descriptor of the file
    would drop the process's lock for all of them. A forked child holds none of its parent's
    locks and marks itself at its first check.

    Args:
        store: The store whose directory holds the mark (its rules on privacy apply).
        key: The bucket's key: the quota group and category.
    """

    def __init__(self, store: HostStore, key: str) -> None:
        lock, _ = store._paths(key)
        self._store = store
        self.path = lock.with_suffix(".present")
        self._mark: _Mark | None = None

    def _shared(self) -> _Mark:
        mark = self._mark
        if mark is None or (os.getpid(), self.path) not in _MARKS:
            mark = _MARKS.get((os.getpid(), self.path))
            if mark is None:
                mark = _MARKS[(os.getpid(), self.path)] = _Mark(self._store, self.path)
            mark.users += 1
            self._mark = mark
        return mark

    def alone(self) -> bool:
        """Mark this process (if not yet), and say whether no other process holds a mark.

        Raises:
            OSError: The directory is not private (:class:`QuotaDirectoryNotPrivateError`) or
                cannot hold the file.
        """
        import fcntl  # noqa: PLC0415

        with _MARKS_LOCK:
            fd = self._shared().file()
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            except OSError as exc:
                if exc.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
                # Another process holds a mark. Ours is (re)set now, unless one is checking at
                # this instant (its write lock, for two system calls): then at the next check.
                with contextlib.suppress(OSError):
                    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 0)
                return False
            # A write lock of our own replaces our read lock; turning it back is atomic, and
            # cannot be refused, since no other process holds any lock on the byte.
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 0)
            return True

    def close(self) -> None:
        """Leave. The last user in this process drops the mark (closing the file drops the
        process's locks on it); the last process to leave removes the file, so that marks of
        groups no longer used (a test suite's endpoints on random ports) do not pile up."""
        import fcntl  # noqa: PLC0415

        with _MARKS_LOCK:
            mark, self._mark = self._mark, None
            if mark is None or _MARKS.get((os.getpid(), self.path)) is not mark:
                return  # never marked, or marked in the parent of this forked child
            mark.users -= 1
            if mark.users > 0:
                return
            del _MARKS[(os.getpid(), self.path)]
            fd, mark.fd = mark.fd, None
            if fd is None:
                return
            with contextlib.suppress(OSError):
                # Alone: remove it under a write lock. A process opening it meanwhile finds it
                # gone at its next check (the inode changed) and marks itself in a new one.
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
                if HostStore._same_file(fd, self.path):
                    os.unlink(self.path)
            with contextlib.suppress(OSError):
                os.close(fd)
