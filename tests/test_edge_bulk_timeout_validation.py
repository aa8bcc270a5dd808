"""A bulk run's bad timeout= is refused when the run is made, before any row is read."""

from __future__ import annotations

import math

import pytest

import aiocognito
from tests.fakes import FakeTransport
from tests.gates import client


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.nan])
async def test_a_non_positive_bulk_timeout_is_refused_up_front(timeout: float) -> None:
    rows = [aiocognito.AttributeUpdate(username="u", attributes={"custom:a": "1"})]
    transport = FakeTransport()
    async with client(transport) as cognito:
        with pytest.raises(aiocognito.AttributeValidationError, match="timeout"):
            cognito.bulk_update(rows, timeout=timeout)
    assert transport.sent == []
