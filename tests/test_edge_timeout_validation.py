"""A zero or negative per-call ``timeout=`` is accepted (RetryPolicy(deadline=...) refuses it):
the call fails with a DeadlineExceededError saying it 'waited behind earlier changes to the
same user' (the lane was idle), after taking a quota token from the shared bucket."""

from __future__ import annotations

import anyio
import pytest

import aiocognito
from tests.gates import Gates, client


@pytest.mark.parametrize("timeout", [0.0, -1.0])
async def test_non_positive_timeout_takes_no_quota(timeout: float) -> None:
    transport = Gates()
    limits = aiocognito.Limits(
        user_update_rps=100.0, adaptive=False, quota_group=f"review-t{timeout}"
    )
    cognito = client(transport, limits=limits)
    await cognito.__aenter__()
    try:
        with anyio.fail_after(5):
            try:
                await cognito.admin_update_user_attributes(
                    "alice", {"nickname": "x"}, timeout=timeout
                )
            except (ValueError, aiocognito.DeadlineExceededError) as exc:
                print(type(exc).__name__, exc)
        stats = cognito.statistics()
    finally:
        await cognito.aclose()
    assert len(transport.sent) == 0
    assert stats.categories["UserUpdate"].sent == 0, "an unsent call took a quota token"
