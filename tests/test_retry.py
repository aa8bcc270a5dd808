"""Retry classification and the retry loop, with time under the test's control."""

from __future__ import annotations

import pytest

import aiocognito
from aiocognito._retry import RetryClass, classify, full_jitter_backoff, retry_call


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def err(code: str, status: int = 400) -> aiocognito.CognitoError:
    return aiocognito._errors.error_class_for_code(code)(
        "m", code=code, operation="Op", status=status
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (err("TooManyRequestsException", 400), RetryClass.THROTTLE),
        (err("TooManyRequestsException", 429), RetryClass.THROTTLE),
        (aiocognito.TooManyRequestsError("", code="429", status=429), RetryClass.THROTTLE),
        (aiocognito.CognitoError("", code="SomethingNew", status=429), RetryClass.THROTTLE),
        (err("InternalErrorException", 500), RetryClass.TRANSIENT),
        (aiocognito.CognitoError("", code="502", status=502), RetryClass.TRANSIENT),
        (aiocognito.TransportError("reset"), RetryClass.TRANSIENT),
        (err("LimitExceededException"), RetryClass.SLOW),
        (err("NotAuthorizedException"), RetryClass.PERMANENT),
        (err("InvalidParameterException"), RetryClass.PERMANENT),
        (err("UserNotFoundException"), RetryClass.PERMANENT),
        (err("AliasExistsException"), RetryClass.PERMANENT),
        (err("CodeMismatchException"), RetryClass.PERMANENT),
        (err("ExpiredCodeException"), RetryClass.PERMANENT),
        (err("UserLambdaValidationException"), RetryClass.PERMANENT),
        (err("InvalidLambdaResponseException"), RetryClass.PERMANENT),
        (err("ResourceNotFoundException"), RetryClass.PERMANENT),
        (err("ForbiddenException"), RetryClass.PERMANENT),
        (aiocognito.CognitoError("", code="SomethingNew", status=400), RetryClass.PERMANENT),
        (aiocognito.AttributeValidationError("bad"), RetryClass.PERMANENT),
        (aiocognito.CredentialsError("none"), RetryClass.PERMANENT),
    ],
)
def test_classification(exc: BaseException, expected: RetryClass) -> None:
    assert classify(exc) is expected


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    policy = aiocognito.RetryPolicy(backoff_base=0.1, backoff_cap=1.0)
    ceilings = [full_jitter_backoff(n, policy, rand=lambda: 0.999999) for n in range(1, 8)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0], rel=1e-4)
    assert full_jitter_backoff(3, policy, rand=lambda: 0.0) == 0.0
    assert full_jitter_backoff(10_000, policy, rand=lambda: 0.5) == pytest.approx(0.5)


async def test_throttles_are_retried_until_success() -> None:
    t = FakeTime()
    answers: list[BaseException | str] = [
        err("TooManyRequestsException"),
        err("InternalErrorException", 500),
        "ok",
    ]
    seen: list[RetryClass] = []

    async def attempt(n: int) -> str:
        answer = answers[n - 1]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    result = await retry_call(
        attempt,
        aiocognito.RetryPolicy(),
        on_failure=lambda _e, kind: seen.append(kind),
        clock=t.clock,
        sleep=t.sleep,
        rand=lambda: 1.0,
    )
    assert result == "ok"
    assert seen == [RetryClass.THROTTLE, RetryClass.TRANSIENT]
    assert t.sleeps == pytest.approx([0.1, 0.2])


async def test_permanent_errors_are_raised_at_once_and_unwrapped() -> None:
    t = FakeTime()
    failure = err("InvalidParameterException")
    calls = 0

    async def attempt(_n: int) -> None:
        nonlocal calls
        calls += 1
        raise failure

    with pytest.raises(aiocognito.InvalidParameterError) as info:
        await retry_call(attempt, aiocognito.RetryPolicy(), clock=t.clock, sleep=t.sleep)
    assert info.value is failure
    assert calls == 1
    assert t.sleeps == []


async def test_the_last_real_error_is_raised_after_the_last_attempt() -> None:
    t = FakeTime()
    failures = [err("TooManyRequestsException") for _ in range(3)]

    async def attempt(n: int) -> None:
        raise failures[n - 1]

    with pytest.raises(aiocognito.TooManyRequestsError) as info:
        await retry_call(
            attempt, aiocognito.RetryPolicy(max_attempts=3), clock=t.clock, sleep=t.sleep
        )
    assert info.value is failures[2]
    assert len(t.sleeps) == 2


async def test_deadline_stops_retrying_before_a_backoff_would_pass_it() -> None:
    t = FakeTime()
    calls = 0

    async def attempt(_n: int) -> None:
        nonlocal calls
        calls += 1
        raise err("TooManyRequestsException")

    policy = aiocognito.RetryPolicy(max_attempts=100, backoff_base=1.0, backoff_cap=1.0)
    with pytest.raises(aiocognito.TooManyRequestsError):
        await retry_call(
            attempt, policy, deadline=3.5, clock=t.clock, sleep=t.sleep, rand=lambda: 1.0
        )
    # Sleeps of 1 s at t=0, 1, 2; the fourth would end at 4 > 3.5.
    assert calls == 4
    assert sum(t.sleeps) <= 3.5


async def test_limit_exceeded_is_not_retried_by_default() -> None:
    t = FakeTime()
    calls = 0

    async def attempt(_n: int) -> None:
        nonlocal calls
        calls += 1
        raise err("LimitExceededException")

    with pytest.raises(aiocognito.LimitExceededError):
        await retry_call(attempt, aiocognito.RetryPolicy(), clock=t.clock, sleep=t.sleep)
    assert calls == 1


async def test_limit_exceeded_is_retried_slowly_when_the_policy_says_so() -> None:
    t = FakeTime()
    answers: list[BaseException | str] = [err("LimitExceededException"), "ok"]

    async def attempt(n: int) -> str:
        answer = answers[n - 1]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    policy = aiocognito.RetryPolicy(
        retry_limit_exceeded=True, limit_exceeded_backoff=240.0, deadline=None
    )
    assert await retry_call(attempt, policy, clock=t.clock, sleep=t.sleep) == "ok"
    assert t.sleeps == [240.0]


async def test_attempt_in_flight_is_cut_off_at_the_deadline() -> None:
    import anyio

    async def attempt(_n: int) -> None:
        await anyio.Event().wait()  # never answers

    with pytest.raises(aiocognito.DeadlineExceededError, match=r"deadline of 0\.05 s"):
        await retry_call(attempt, aiocognito.RetryPolicy(), deadline=0.05)
