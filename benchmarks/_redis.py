"""A throwaway redis-server for the fleet contenders: one per run, persistence off.

The fleet mode (``Limits(shared_quota_url=...)``) is measured against a real server, started
as the tests start theirs (:mod:`tests.redis_server`), and optionally killed part-way.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.redis_server import RedisServer, redis_server_binary

__all__ = ["host_quota", "shared_quota", "shared_quota_killed_after"]


@contextlib.contextmanager
def _server() -> Iterator[RedisServer]:
    binary = redis_server_binary()
    if binary is None:
        raise SystemExit("the fleet contenders need redis-server (apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(binary, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def shared_quota() -> Iterator[dict[str, Any]]:
    """``Limits`` keywords that share the run's quota through a fresh Redis."""
    with _server() as server:
        yield {"shared_quota_url": server.url}


@contextlib.contextmanager
def alone_on_host() -> Iterator[dict[str, Any]]:
    """``Limits`` keywords that keep every process of the run pacing itself alone."""
    yield {"share_on_host": False}


@contextlib.contextmanager
def host_quota() -> Iterator[dict[str, Any]]:
    """``Limits`` keywords that share the run's quota through files in a fresh directory."""
    with tempfile.TemporaryDirectory() as directory:
        yield {"shared_quota_url": f"file://{directory}/quota"}


def shared_quota_killed_after(seconds: float) -> Any:
    """Like :func:`shared_quota`, but Redis is killed (SIGKILL) ``seconds`` into the run."""

    @contextlib.contextmanager
    def killed() -> Iterator[dict[str, Any]]:
        with _server() as server:
            timer = threading.Timer(seconds, server.kill)
            timer.start()
            try:
                yield {"shared_quota_url": server.url}
            finally:
                timer.cancel()

    return killed
