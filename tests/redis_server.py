"""A real ``redis-server`` for the fleet tests: a free port, no persistence, stopped after.

The fleet mode's promises (one atomic bucket, falling back when Redis dies, rejoining when it
comes back) are about a real server, so the tests start one; fakeredis is no substitute. CI
installs the ``redis-server`` package (see ``.ci/run``); elsewhere, install it (``apt-get
install redis-server``, ``brew install redis``) or point ``AIOCOGNITO_REDIS_SERVER`` at the
binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["DelayingProxy", "RedisServer", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """The redis-server to run: ``AIOCOGNITO_REDIS_SERVER``, else the one on PATH."""
    return os.environ.get("AIOCOGNITO_REDIS_SERVER") or shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process that a test may kill (SIGKILL) and start again on its port."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers PING."""
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--enable-debug-command", "yes",  # DEBUG SLEEP makes a slow Redis on demand
            "--loglevel", "warning",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError("redis-server did not answer within 10 s")

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-conversation, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class DelayingProxy:
    """A TCP proxy in front of a server that holds back some of its answers.

    Each chunk the server sends is delayed by ``delay`` seconds with probability ``chance``
    (seeded): a Redis that is slow now and then, for one client, while others are served at
    once. Start it with ``async with``; ``url`` is the Redis URL through it.
    """

    def __init__(self, port: int, *, chance: float, delay: float, seed: int = 7) -> None:
        self.port = port
        self.chance, self.delay = chance, delay
        self.delayed = 0
        self._random = random.Random(seed)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.listening = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listening}/0"

    async def __aenter__(self) -> DelayingProxy:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        self.listening = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.port)
        for task in (
            asyncio.ensure_future(self._pipe(reader, upstream_writer, delaying=False)),
            asyncio.ensure_future(self._pipe(upstream_reader, writer, delaying=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delaying: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if delaying and self._random.random() < self.chance:
                    self.delayed += 1
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
