"""After an attempt that may have been applied (a 500), the retry is refused by the limiter's
deadline check: the caller gets QuotaDeadlineError '...; it was not sent' (otel admission
'failed_fast'), and a bulk row is journaled FAILED (skipped for good), though the change may
have been applied."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import aiocognito
from aiocognito._client import client_over
from aiocognito._errors import InternalErrorError
from tests.fakes import FakeTransport
from tests.virtual_time import virtual_time

POOL = "eu-west-1_AbC"


class Slow500(FakeTransport):
    async def call(self, operation: str, params: Any, *, secrets: Any = ()) -> dict[str, Any]:
        self.sent.append(params)
        await anyio.sleep(0.3)
        raise InternalErrorError("boom", status=500, operation=operation)


@virtual_time
async def test_quota_deadline_after_maybe_applied() -> None:
    transport = Slow500()
    limits = aiocognito.Limits(user_update_rps=1000, adaptive=False)
    retry = aiocognito.RetryPolicy(backoff_base=0.001, backoff_cap=0.001)
    with anyio.fail_after(10):
        async with client_over(
            transport, region_name="eu-west-1", user_pool_id=POOL, limits=limits, retry=retry
        ) as cognito:
            with pytest.raises(aiocognito.AiocognitoError) as info:
                await cognito.admin_update_user_attributes("u", {"custom:a": "1"}, timeout=0.5)
    print(len(transport.sent), type(info.value).__name__, info.value)
    assert len(transport.sent) == 1
    assert "not sent" not in str(info.value)
