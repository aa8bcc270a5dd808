"""The ``aiocognito`` logger: silent by default, DEBUG per attempt, INFO on rate changes,
WARNING on exhausted throttle retries and on fallbacks; and never a secret, at any level."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

import aiocognito
from aiocognito import _log
from aiocognito._client import client_over
from aiocognito._limits import HEAVY_SPAN, HEAVY_THROTTLES, RateLimiter
from tests.fake_helpers import ManualClock
from tests.fakes import FakeTransport
from tests.test_engine import FAST_RETRY, UNLIMITED, jwt

POOL = "eu-west-1_AbC"


def throttle(message: str = "Rate exceeded") -> aiocognito.TooManyRequestsError:
    return aiocognito.TooManyRequestsError(message, operation="X", status=400, request_id="rid-t")


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "aiocognito" and getattr(r, "event", None) == event
    ]


def test_silent_by_default() -> None:
    logger = logging.getLogger("aiocognito")
    # A NullHandler keeps logging's last-resort handler from printing our warnings to stderr
    # when the application has configured nothing; the level is left to the application.
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert logger.level == logging.NOTSET
    assert logger.propagate


async def test_debug_record_per_attempt(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiocognito")
    transport = FakeTransport()
    transport.push(
        throttle(),
        {"ResponseMetadata": {"RequestId": "rid-ok", "HTTPStatusCode": 200}},
        aiocognito.UserNotFoundError("nope", operation="X", status=400, request_id="rid-404"),
    )
    cognito = client_over(
        transport, region_name="eu-west-1", user_pool_id=POOL, limits=UNLIMITED, retry=FAST_RETRY
    )
    async with cognito:
        await cognito.admin_update_user_attributes("alice", {"nickname": "n"})
        with pytest.raises(aiocognito.UserNotFoundError):
            await cognito.admin_get_user("ghost")
    attempts = records(caplog, "attempt")
    assert len(attempts) == len(transport.sent) == 3
    seen = [
        (r.operation, r.attempt, r.status, r.code, r.request_id, r.merged)  # type: ignore[attr-defined]
        for r in attempts
    ]
    assert seen == [
        ("AdminUpdateUserAttributes", 1, 400, "TooManyRequestsException", "rid-t", 1),
        ("AdminUpdateUserAttributes", 2, 200, None, "rid-ok", 1),
        ("AdminGetUser", 1, 400, "UserNotFoundException", "rid-404", 1),
    ]
    assert all(r.levelno == logging.DEBUG and r.latency_ms >= 0 for r in attempts)  # type: ignore[attr-defined]
    assert "AdminUpdateUserAttributes attempt 2: 200 ok in" in attempts[1].getMessage()


async def test_no_debug_work_when_debug_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiocognito")
    transport = FakeTransport()
    async with client_over(transport, region_name="eu-west-1", limits=UNLIMITED) as cognito:
        await cognito.get_user(jwt("u"))  # {} is not a user: fails to parse, but was sent
    assert records(caplog, "attempt") == []


async def test_warning_when_retries_run_out_on_a_throttle(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="aiocognito")
    transport = FakeTransport()
    transport.push(throttle(), {}, throttle(), throttle(), throttle())
    retry = aiocognito.RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_cap=0.001)
    cognito = client_over(
        transport, region_name="eu-west-1", user_pool_id=POOL, limits=UNLIMITED, retry=retry
    )
    async with cognito:
        await cognito.admin_update_user_attributes("alice", {"nickname": "a"})  # recovers
        assert records(caplog, "retries_exhausted") == []
        with pytest.raises(aiocognito.TooManyRequestsError):
            await cognito.admin_update_user_attributes("bob", {"nickname": "b"})
        transport.push(aiocognito.UserNotFoundError("no", operation="X", status=400))
        with pytest.raises(aiocognito.UserNotFoundError):  # not a throttle: no warning
            await cognito.admin_update_user_attributes("carol", {"nickname": "c"})
    (warning,) = records(caplog, "retries_exhausted")
    assert warning.levelno == logging.WARNING
    assert (warning.operation, warning.attempts, warning.request_id) == (  # type: ignore[attr-defined]
        "AdminUpdateUserAttributes",
        3,
        "rid-t",
    )


def test_info_on_every_rate_decision_with_old_and_new_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every change of the rate at one instant is a decision, and each is logged once."""
    caplog.set_level(logging.INFO, logger="aiocognito")
    clock = ManualClock()
    limiter = RateLimiter("UserUpdate", None, adaptive=True, clock=clock)  # quota unknown
    limiter.on_rate_change = _log.rate_changed
    changes: list[tuple[float, float]] = []

    def answer(throttled: bool, step: float) -> None:
        clock.advance(step)
        before = limiter.rate()
        limiter.record(throttled=throttled)
        after = limiter.rate()
        assert before is not None
        assert after is not None
        if after != before:
            changes.append((before, after))

    # Slow start: saturated windows with no throttles double the rate.
    for _ in range(2):
        rate = limiter.rate()
        assert rate is not None
        for _ in range(int(rate) + 1):
            answer(False, 1.0 / rate)
    # Then the quota shows: heavy throttling ends slow start.
    for _ in range(HEAVY_THROTTLES + 5):
        answer(True, 0.01)
    # A mild throttled fraction: a cut, then the same fraction again, so it is undone as noise.
    for _ in range(2):
        for i in range(50):
            answer(i % 5 == 0, 0.021)
    logged = [r for r in caplog.records if getattr(r, "event", None) == "rate_change"]
    # The old rate is the one the decision saw: the window's end can move the climb's pace
    # a hair first, so compare to within a percent.
    assert len(logged) == len(changes)
    for record, (before, after) in zip(logged, changes, strict=True):
        assert record.old_rate == pytest.approx(before, rel=0.01)  # type: ignore[attr-defined]
        assert record.new_rate == pytest.approx(after, abs=0.001)  # type: ignore[attr-defined]
    # Windows end on whole seconds of the wall clock, so which windows judge what varies from
    # run to run; the decisions it must make, and their logging, do not.
    reasons = [r.reason for r in logged]  # type: ignore[attr-defined]
    assert reasons[0] == "slow_start"
    assert "slow_start_end" in reasons
    assert set(reasons) <= {"slow_start", "slow_start_end", "cut", "undo"}
    assert all(r.levelno == logging.INFO and r.category == "UserUpdate" for r in logged)  # type: ignore[attr-defined]
    fractions = dict(zip(reasons, (r.throttled_fraction for r in logged), strict=True))  # type: ignore[attr-defined]
    assert fractions["slow_start"] == 0.0
    assert fractions["slow_start_end"] > 0.0  # throttling, risen with the rate, ends slow start
    assert "UserUpdate rate 25.0 -> 50.0 requests/s: slow start" in logged[0].getMessage()


def test_fallback_warns_once_per_outage(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aiocognito")
    log = _log.FallbackLog("the shared quota (redis)", "the local adaptive limiter")
    cause = ConnectionError("redis://:hunter2-password@quota.internal:6379")
    for _ in range(3):
        log.unreachable(cause)
    log.reachable()
    log.reachable()
    log.unreachable(TimeoutError())
    events = [(r.levelno, r.event) for r in caplog.records]  # type: ignore[attr-defined]
    assert events == [
        (logging.WARNING, "fallback"),
        (logging.INFO, "rejoined"),
        (logging.WARNING, "fallback"),
    ]
    assert log.outages == 2
    assert "hunter2" not in caplog.text  # the cause's type only, never its text
    assert "ConnectionError" in caplog.records[0].getMessage()


# ------------------------------------------------------------------------------------------
# Redaction: every secret kind, through all three levels


TOKEN = jwt("secret-subject", "token-jti-secret")
VALUES = {"email": "hidden.person@example.com", "custom:tier": "platinum-secret-tier"}
METADATA = {"metadata-key-secret": "metadata-value-secret"}
CODE = "918273645"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
SESSION = "session-token-secret-FwoGZXIvYXdzE"
SECRETS = [TOKEN, *VALUES.values(), *METADATA, *METADATA.values(), CODE, SECRET_KEY, SESSION]


def attempts(n: int) -> aiocognito.RetryPolicy:
    return aiocognito.RetryPolicy(max_attempts=n, backoff_base=0.001, backoff_cap=0.001)


def echo_secrets(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A hostile service: every error message repeats what the request carried."""
    text = json.dumps(params)
    if operation == "VerifyUserAttribute":
        raise aiocognito.CodeMismatchError(f"wrong code in {text}", operation=operation, status=400)
    raise throttle(f"Rate exceeded for {text}")


async def test_no_secret_in_any_record_at_any_level(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aiocognito")
    transport = FakeTransport(echo_secrets)
    limits = aiocognito.Limits(user_update_rps=1000.0, adaptive=True)
    cognito = client_over(
        transport,
        region_name="eu-west-1",
        user_pool_id=POOL,
        limits=limits,
        retry=FAST_RETRY,
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION,
    )
    async with cognito:
        # The limiter judges on a clock the test moves: 30 throttles in 0.3 s make a cut.
        limiter = cognito._limiters["UserUpdate"]
        clock = ManualClock(limiter._clock())
        limiter._clock = clock
        original = transport.handler

        def slow(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
            clock.advance(0.01)
            return original(operation, params)

        transport.handler = slow
        # Kept short: once the rate is cut to its floor, more attempts would wait on the clock.
        with anyio.fail_after(10):
            with pytest.raises(aiocognito.CodeMismatchError):
                await cognito.verify_user_attribute(TOKEN, "email", CODE)
            # The last HEAVY_SPAN answers all throttled are too heavy to be noise: the window
            # ends early in a cut, at INFO.
            with pytest.raises(aiocognito.TooManyRequestsError):
                await cognito.update_user_attributes(
                    TOKEN, VALUES, client_metadata=METADATA, retry=attempts(HEAVY_SPAN)
                )
            clock.advance(1.0)  # the cut rate's next token
            with pytest.raises(aiocognito.TooManyRequestsError):
                await cognito.admin_update_user_attributes(
                    "alice", VALUES, client_metadata=METADATA, retry=attempts(1)
                )
    ours = [r for r in caplog.records if r.name == "aiocognito"]
    levels = {r.levelno for r in ours}
    assert levels == {logging.DEBUG, logging.INFO, logging.WARNING}  # all three were exercised
    for record in ours:
        # Everything a handler or a JSON formatter could print: message, fields, extras.
        rendered = record.getMessage() + json.dumps(record.__dict__, default=repr)
        for secret in SECRETS:
            assert secret not in rendered, (secret, record.getMessage())
        assert not hasattr(record, _log.SECRETS_ATTRIBUTE)
