"""FakeCognitoProcess: the fake server in a process of its own.

Benchmarks need the server off the client's CPU and event loop; tests of a command-line tool
need it to outlive the process under test. This runs ``aiocognito fake-server`` as a child
process, waits for its URL, and reads its state through the control endpoints.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

__all__ = ["FakeCognitoProcess"]


class FakeCognitoProcess:
    """Run ``aiocognito fake-server`` in a child process; use as a (sync) context manager.

    Args:
        seed_users: Users ``user0..user{N-1}`` in a pool "fake" with custom attribute ``tier``.
        user_update_rps: The UserUpdate quota, or ``None`` for no limit.
        user_read_rps: The UserRead quota, or ``None`` for no limit.
        per_user_write_rps: The per-user write limit, or ``None`` for none.
        latency_ms: Fixed latency added to every request.
        faults: Fault specs as the command line takes them, e.g. ``"throttle:p=0.15"``.
        seed: Seed for reproducible runs.
        port: The port; 0 picks a free one.

    Attributes:
        endpoint_url: Where the server listens.
        pool_id: The seeded pool's id (empty if nothing was seeded).
    """

    def __init__(
        self,
        *,
        seed_users: int = 0,
        user_update_rps: float | None = 25.0,
        user_read_rps: float | None = 120.0,
        per_user_write_rps: float | None = 10.0,
        latency_ms: float = 0.0,
        faults: Iterable[str] = (),
        seed: int | None = None,
        port: int = 0,
    ) -> None:
        def rate(value: float | None) -> str:
            return "none" if value is None else f"{value:g}"

        self.command = [
            sys.executable, "-m", "aiocognito", "fake-server", "--port", str(port),
            "--user-update-rps", rate(user_update_rps), "--user-read-rps", rate(user_read_rps),
            "--per-user-write-rps", rate(per_user_write_rps), "--latency-ms", f"{latency_ms:g}",
        ]  # fmt: skip
        if seed_users:
            self.command += ["--seed-users", str(seed_users)]
        if seed is not None:
            self.command += ["--seed", str(seed)]
        for fault in faults:
            self.command += ["--fault", fault]
        self._seeded = bool(seed_users)
        self._process: subprocess.Popen[str] | None = None
        self.endpoint_url = ""
        self.pool_id = ""

    def __enter__(self) -> Self:
        process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True)
        self._process = process
        assert process.stdout is not None
        self.endpoint_url = process.stdout.readline().strip()
        if not self.endpoint_url.startswith("http"):
            self.__exit__(None, None, None)
            raise RuntimeError("the fake server did not start: " + " ".join(self.command))
        if self._seeded:
            self.pool_id = process.stdout.readline().split()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()

    @property
    def pid(self) -> int:
        """The child's process id (to read its CPU time, say)."""
        assert self._process is not None
        return self._process.pid

    def get(self, path: str) -> Any:
        """GET a control endpoint, e.g. ``/_fake/stats``; return the decoded JSON."""
        with urllib.request.urlopen(self.endpoint_url + path, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """Requests by operation and outcome, quota state, faults fired (``/_fake/stats``)."""
        result: dict[str, Any] = self.get("/_fake/stats")
        return result

    def attribute(self, name: str, pool_id: str | None = None) -> dict[str, Any]:
        """Every user's value of one attribute, and the values applied in order."""
        result: dict[str, Any] = self.get(
            f"/_fake/pools/{pool_id or self.pool_id}/attribute/{name}"
        )
        return result
