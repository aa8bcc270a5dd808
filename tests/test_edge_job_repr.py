"""The engine's records (Job, and through it _Flight/_Batch/_Lane) use attrs' default repr:
it prints the access token, the attribute values and client metadata (design habit 4:
field(repr=False) for tokens and values). Anything that logs or reprs engine state leaks them."""

from __future__ import annotations

import attrs
import pytest

import aiocognito
from aiocognito._dispatch import Dispatcher
from tests.fakes import FakeTransport

TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSJ9.SECRET-SIGNATURE"


async def test_job_repr_hides_token_and_values() -> None:
    d = Dispatcher(
        FakeTransport(), limits=aiocognito.Limits(), retry=aiocognito.RetryPolicy(), limiters={}
    )
    job = d.make_job(
        "UpdateUserAttributes",
        {
            "AccessToken": TOKEN,
            "UserAttributes": [{"Name": "phone_number", "Value": "+15550001111"}],
        },
        (TOKEN, "+15550001111"),
        attributes={"phone_number": "+15550001111"},
    )
    for text in (repr(job), repr(job._ticket)):
        assert "SECRET-SIGNATURE" not in text
        assert "+15550001111" not in text


async def test_a_job_is_a_frozen_request() -> None:
    d = Dispatcher(
        FakeTransport(), limits=aiocognito.Limits(), retry=aiocognito.RetryPolicy(), limiters={}
    )
    job = d.make_job("AdminGetUser", {"UserPoolId": "p", "Username": "u"}, (), tag="row 1")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        job.tag = "row 2"  # type: ignore[misc]
    assert (job.tag, job.finished, job.attempts, job.batch, job.merged_with) == (
        "row 1",
        False,
        0,
        None,
        1,
    )
