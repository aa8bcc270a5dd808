"""What the engine needs from the layer below it: open, one attempt, close.

:class:`~aiocognito._transport.AiobotocoreTransport` is the real one; tests use fakes. The engine
depends on this protocol only, never on aiobotocore.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["Transport"]


class Transport(Protocol):
    """What the client needs from the layer below: open, one call, close."""

    async def open(self) -> None:
        """Open connections and load what calls need; called once."""

    async def call(
        self, operation: str, params: Mapping[str, Any], *, secrets: Sequence[str] = ()
    ) -> dict[str, Any]:
        """Make one attempt of ``operation``; raise an :class:`AiocognitoError` on failure."""
        ...

    async def aclose(self) -> None:
        """Close connections; called once."""
