"""The engine: per-user lanes, coalescing, priorities, deadlines, cancellation, concurrency."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiocognito
from aiocognito._client import client_over
from aiocognito._dispatch import token_subject
from aiocognito._limits import Priority, QuotaClaim, RateLimiter, ShareLimit
from aiocognito.testing import CustomAttribute, FakeCognito, Latency
from tests.fakes import FakeTransport
from tests.virtual_time import virtual_time

POOL = "eu-west-1_AbC"
UNLIMITED = aiocognito.Limits(user_update_rps=None, user_read_rps=None, adaptive=False)
FAST_RETRY = aiocognito.RetryPolicy(backoff_base=0.001, backoff_cap=0.001)


def jwt(sub: str, extra: str = "") -> str:
    def enc(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'RS256'})}.{enc({'sub': sub, 'iss': 'i', 'jti': extra})}.c2ln"


def client(transport: FakeTransport, **kwargs: Any) -> aiocognito.CognitoClient:
    kwargs.setdefault("limits", UNLIMITED)
    kwargs.setdefault("retry", FAST_RETRY)
    return client_over(transport, region_name="eu-west-1", user_pool_id=POOL, **kwargs)


class GatedTransport(FakeTransport):
    """Holds the first call open until the test releases it, to let others queue behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = anyio.Event()
        self.first_arrived = anyio.Event()

    async def call(
        self, operation: str, params: Mapping[str, Any], *, secrets: Any = ()
    ) -> dict[str, Any]:
        if not self.first_arrived.is_set():
            self.first_arrived.set()
            self.sent.append(self._record(operation, params))
            await self.release.wait()
            return {}
        return await super().call(operation, params, secrets=secrets)

    @staticmethod
    def _record(operation: str, params: Mapping[str, Any]) -> Any:
        from tests.fakes import SentCall

        return SentCall(operation, dict(params), ())


async def wait_until(predicate: Any) -> None:
    """Yield to the event loop until ``predicate()`` holds (no wall-clock sleeping)."""
    with anyio.fail_after(5):
        while not predicate():
            await anyio.lowlevel.checkpoint()


# ------------------------------------------------------------------------------------------
# Lane keys


def test_token_subject_reads_the_unverified_payload() -> None:
    assert token_subject(jwt("u-1", "a")) == token_subject(jwt("u-1", "b")) == "i#u-1"
    assert token_subject("not-a-jwt") == "not-a-jwt"
    assert token_subject("a.!!!.c") == "a.!!!.c"


# ------------------------------------------------------------------------------------------
# Coalescing


async def test_queued_updates_merge_and_every_caller_gets_the_result() -> None:
    transport = GatedTransport()
    transport.push({"ResponseMetadata": {"RequestId": "merged"}})
    results: dict[int, aiocognito.UpdateResult] = {}
    async with client(transport) as cognito:

        async def update(i: int, attrs: dict[str, str | None]) -> None:
            results[i] = await cognito.admin_update_user_attributes("alice", attrs)

        async with anyio.create_task_group() as tg:
            changes: list[dict[str, str | None]] = [
                {"nickname": "first"},
                {"nickname": None, "custom:tier": "gold"},
                {"nickname": "third", "custom:tier": "silver"},  # replaces all of the one before
                {"website": None},
            ]
            tg.start_soon(update, 0, changes[0])
            await transport.first_arrived.wait()
            for i in (1, 2, 3):
                tg.start_soon(update, i, changes[i])
            await wait_until(lambda: cognito.statistics().calls_started == 4)
            transport.release.set()
        stats = cognito.statistics()
    assert [c.params["UserAttributes"] for c in transport.sent] == [
        [{"Name": "nickname", "Value": "first"}],
        [
            {"Name": "nickname", "Value": "third"},  # a delete followed by a set is the set
            {"Name": "custom:tier", "Value": "silver"},  # the later value wins
            {"Name": "website", "Value": ""},  # a blank value deletes
        ],
    ]
    assert results[0].request_id is None
    assert results[1].request_id == results[2].request_id == results[3].request_id == "merged"
    assert stats.calls_saved == 2
    assert stats.requests_sent == 2
    assert stats.active_lanes == 0


async def test_different_metadata_tokens_and_verification_are_not_merged() -> None:
    transport = GatedTransport()
    token = jwt("u-1")
    async with client(transport) as cognito, anyio.create_task_group() as tg:
        tg.start_soon(lambda: cognito.update_user_attributes(token, {"nickname": "a"}))
        await transport.first_arrived.wait()
        tg.start_soon(
            lambda: cognito.update_user_attributes(
                token, {"nickname": "b"}, client_metadata={"k": "1"}
            )
        )
        tg.start_soon(
            lambda: cognito.update_user_attributes(
                token, {"nickname": "c"}, client_metadata={"k": "2"}
            )
        )
        tg.start_soon(lambda: cognito.verify_user_attribute(token, "email", "123456"))
        tg.start_soon(
            lambda: cognito.update_user_attributes(
                token, {"nickname": "d"}, client_metadata={"k": "2"}
            )
        )
        await wait_until(lambda: cognito.statistics().calls_started == 5)
        transport.release.set()
    sent = [
        (c.operation, c.params.get("UserAttributes"), c.params.get("ClientMetadata"))
        for c in transport.sent
    ]
    assert sent == [
        ("UpdateUserAttributes", [{"Name": "nickname", "Value": "a"}], None),
        ("UpdateUserAttributes", [{"Name": "nickname", "Value": "b"}], {"k": "1"}),
        ("UpdateUserAttributes", [{"Name": "nickname", "Value": "c"}], {"k": "2"}),
        ("VerifyUserAttribute", None, None),
        ("UpdateUserAttributes", [{"Name": "nickname", "Value": "d"}], {"k": "2"}),
    ]


async def test_usernames_differing_in_case_share_a_lane_but_never_merge() -> None:
    # A case-insensitive pool takes "Alice" and "alice" for one user: one lane, in order. A
    # case-sensitive pool has two users: merging their changes would write one's to the other.
    transport = GatedTransport()
    async with client(transport) as cognito, anyio.create_task_group() as tg:
        tg.start_soon(lambda: cognito.admin_update_user_attributes("Alice", {"nickname": "a"}))
        await transport.first_arrived.wait()
        tg.start_soon(lambda: cognito.admin_update_user_attributes("alice", {"nickname": "b"}))
        tg.start_soon(lambda: cognito.admin_update_user_attributes("ALICE", {"website": "c"}))
        tg.start_soon(lambda: cognito.admin_update_user_attributes("ALICE", {"locale": "d"}))
        tg.start_soon(lambda: cognito.admin_update_user_attributes("bob", {"nickname": "x"}))
        # bob, started last, is sent while Alice's call is held: the others wait behind it.
        await wait_until(lambda: len(transport.sent) == 2)
        assert transport.sent[1].params["Username"] == "bob"
        transport.release.set()
    sent = [(c.params["Username"], c.params["UserAttributes"]) for c in transport.sent]
    assert sent == [
        ("Alice", [{"Name": "nickname", "Value": "a"}]),
        ("bob", [{"Name": "nickname", "Value": "x"}]),
        ("alice", [{"Name": "nickname", "Value": "b"}]),
        ("ALICE", [{"Name": "website", "Value": "c"}, {"Name": "locale", "Value": "d"}]),
    ]


# ------------------------------------------------------------------------------------------
# Ordering


async def test_ordering_holds_under_random_latency_against_the_fake() -> None:
    users = [f"user{i}" for i in range(12)]
    per_user = 15
    async with FakeCognito(
        user_update_rps=None, per_user_write_rps=None, latency=Latency.uniform(0.0, 0.004), seed=4
    ) as fake:
        pool = fake.create_pool(custom_attributes=[CustomAttribute(name="seq")])
        for name in users:
            fake.create_user(pool.id, name)
        async with aiocognito.CognitoClient(
            region_name="us-east-1",
            user_pool_id=pool.id,
            endpoint_url=fake.endpoint_url,
            limits=UNLIMITED,
            aws_access_key_id="k",
            aws_secret_access_key="s",
        ) as cognito:
            rng = random.Random(9)

            async def update(name: str, n: int) -> None:
                await cognito.admin_update_user_attributes(name, {"custom:seq": str(n)})

            async with anyio.create_task_group() as tg:
                for n in range(per_user):
                    for name in rng.sample(users, len(users)):
                        tg.start_soon(update, name, n)
                        await anyio.lowlevel.checkpoint()
            saved = cognito.statistics().calls_saved
        for name in users:
            assert fake.user_attributes(pool.id, name)["custom:seq"] == str(per_user - 1)
            applied = [int(u.changes["custom:seq"] or -1) for u in fake.update_log(pool.id, name)]
            assert applied == sorted(applied), f"{name} applied out of order: {applied}"
        total_applied = sum(len(fake.update_log(pool.id, n)) for n in users)
    assert total_applied + saved == len(users) * per_user


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob", "carol"]),
            st.dictionaries(
                st.sampled_from(["nickname", "website", "custom:tier"]),
                st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),
                min_size=1,
            ),
            st.integers(min_value=0, max_value=3),
        ),
        max_size=30,
    )
)
def test_final_state_equals_applying_each_users_updates_in_order(
    updates: list[tuple[str, dict[str, str | None], int]],
) -> None:
    store: dict[str, dict[str, str]] = {}

    class StoreTransport(FakeTransport):
        async def call(
            self, operation: str, params: Mapping[str, Any], *, secrets: Any = ()
        ) -> dict[str, Any]:
            self.sent.append(self._record(operation, params))
            user = store.setdefault(params["Username"], {})
            await anyio.lowlevel.checkpoint()  # let other tasks run mid-call
            for attr in params["UserAttributes"]:
                if attr["Value"]:
                    user[attr["Name"]] = attr["Value"]
                else:
                    user.pop(attr["Name"], None)
            return {}

        @staticmethod
        def _record(operation: str, params: Mapping[str, Any]) -> Any:
            from tests.fakes import SentCall

            return SentCall(operation, dict(params), ())

    async def main() -> None:
        async with client(StoreTransport()) as cognito, anyio.create_task_group() as tg:
            for user, attrs, pause in updates:
                tg.start_soon(cognito.admin_update_user_attributes, user, attrs)
                for _ in range(pause):
                    await anyio.lowlevel.checkpoint()

    asyncio.run(main())
    expected: dict[str, dict[str, str]] = {}
    for user, attrs, _pause in updates:
        state = expected.setdefault(user, {})
        for name, value in attrs.items():
            if value:
                state[name] = value
            else:
                state.pop(name, None)
    assert {u: s for u, s in store.items() if s or u in expected} == {
        u: s for u, s in expected.items() if s or u in store
    }


# ------------------------------------------------------------------------------------------
# Cancellation, deadlines, close


async def test_cancelled_driver_hands_its_batch_on_and_nothing_leaks() -> None:
    transport = GatedTransport()
    before = len(asyncio.all_tasks())
    async with client(transport) as cognito:
        done: list[str] = []

        async def update(value: str) -> None:
            await cognito.admin_update_user_attributes("alice", {"nickname": value})
            done.append(value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(update, "cancelled")
            await transport.first_arrived.wait()
            tg.cancel_scope.cancel()  # the driving caller is cancelled mid-call
        transport.handler = lambda _op, _p: {}
        async with anyio.create_task_group() as tg:
            tg.start_soon(update, "second")
            tg.start_soon(update, "third")
            await wait_until(lambda: cognito.statistics().calls_started == 3)
            # The abandoned call is still on the wire: nothing later may overtake it.
            assert len(transport.sent) == 1
            transport.release.set()
        stats = cognito.statistics()
    assert sorted(done) == ["second", "third"]
    sent = [c.params["UserAttributes"] for c in transport.sent]
    assert sent == [
        [{"Name": "nickname", "Value": "cancelled"}],
        [{"Name": "nickname", "Value": "third"}],  # second and third merged behind it
    ]
    assert stats.active_lanes == 0
    assert stats.in_flight == 0
    assert len(asyncio.all_tasks()) == before


async def test_a_read_whose_caller_left_is_not_counted_as_an_error() -> None:
    transport = GatedTransport()
    async with client(transport) as cognito:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: cognito.admin_get_user("alice"))
            await transport.first_arrived.wait()
            tg.cancel_scope.cancel()  # the reader leaves; its request is cancelled with it
        await wait_until(lambda: cognito.statistics().in_flight == 0)
        transport.release.set()
        await cognito.admin_get_user("bob")
        stats = cognito.statistics()
    assert stats.errors_by_code == {}
    assert len(transport.sent) == 2


@virtual_time
async def test_an_attempt_cancelled_inside_the_transport_is_counted() -> None:
    # Not the engine's doing (a connector closing under it, say): a failure, even after the
    # caller's deadline passed, and it is counted.
    class SelfCancelling(FakeTransport):
        async def call(
            self, operation: str, params: Mapping[str, Any], *, secrets: Any = ()
        ) -> dict[str, Any]:
            await anyio.sleep(0.3)
            raise asyncio.CancelledError

    async with client(SelfCancelling()) as cognito:
        with pytest.raises(aiocognito.DeadlineExceededError):
            await cognito.admin_update_user_attributes("alice", {"nickname": "a"}, timeout=0.1)
        await anyio.sleep(1.0)  # virtual time: the attempt ends meanwhile
        assert cognito.statistics().in_flight == 0
        assert cognito.statistics().errors_by_code == {"TransportError": 1}


@virtual_time
async def test_waiting_caller_times_out_without_sending() -> None:
    transport = GatedTransport()
    async with client(transport) as cognito, anyio.create_task_group() as tg:
        tg.start_soon(lambda: cognito.admin_update_user_attributes("alice", {"nickname": "a"}))
        await transport.first_arrived.wait()
        with pytest.raises(aiocognito.DeadlineExceededError, match="it was not sent"):
            await cognito.admin_update_user_attributes("alice", {"nickname": "b"}, timeout=0.05)
        transport.release.set()
    assert [c.params["UserAttributes"][0]["Value"] for c in transport.sent] == ["a"]


async def test_close_from_another_task() -> None:
    transport = FakeTransport()
    cognito = client(transport)
    await cognito.__aenter__()
    await cognito.admin_get_user("alice")
    async with anyio.create_task_group() as tg:
        tg.start_soon(cognito.aclose)
    assert cognito.state is aiocognito.ClientState.CLOSED
    assert transport.closed == 1


# ------------------------------------------------------------------------------------------
# Quota: priorities, shares, deadlines, sharing between clients


@virtual_time
async def test_interactive_goes_before_queued_bulk() -> None:
    limiter = RateLimiter("UserUpdate", 200.0, adaptive=False)
    while limiter._bucket.tokens >= 1:  # drain the burst
        await limiter.acquire(Priority.BULK)
    order: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        await limiter.acquire(priority)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(take, f"bulk{i}", Priority.BULK)
        await wait_until(lambda: limiter.statistics().queued + len(order) == 6)
        served_before = len(order)  # the clock stands still while the web call arrives
        tg.start_soon(take, "web", Priority.INTERACTIVE)
        await wait_until(
            lambda: len(limiter._queues.by_priority[Priority.INTERACTIVE]) == 1 or "web" in order
        )
    # The web call skips the queue: it takes the very next token.
    assert order.index("web") == served_before
    assert [n for n in order if n != "web"] == [f"bulk{i}" for i in range(6)]


@virtual_time
async def test_share_caps_a_bulk_job() -> None:
    limiter = RateLimiter("UserUpdate", 100.0, adaptive=False)
    share = ShareLimit(0.5)
    with pytest.raises(ValueError, match="max_share"):
        ShareLimit(1.5)
    started = anyio.current_time()
    for _ in range(11):
        await limiter.acquire(Priority.BULK, share=share)
    # The first goes at once; 10 more at the share's 50/s take 0.2 s (the category's own
    # bucket, at 100/s with a burst of 20, never holds them up).
    assert anyio.current_time() - started == pytest.approx(0.2, abs=1e-4)


# Promotion (priority inheritance; the engine's side is in tests/test_priority_inheritance.py)


async def _drained(limiter: RateLimiter) -> None:
    """Take the bucket's tokens, so that every next caller queues."""
    while limiter._wait_time(limiter._clock(), None) == 0.0:
        await limiter.acquire(Priority.BULK)


@virtual_time
async def test_a_promoted_bulk_waiter_goes_after_interactive_ones_before_bulk_ones() -> None:
    limiter = RateLimiter("UserUpdate", 100.0, adaptive=False)
    await _drained(limiter)
    share = ShareLimit(0.1)  # 10/s: a share that would hold the bulk waiters back on its own
    order: list[str] = []
    claims: dict[str, QuotaClaim] = {}

    async def take(name: str, priority: Priority) -> None:
        claim = claims[name] = QuotaClaim()
        await limiter.acquire(priority, share=share if priority else None, claim=claim)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(take, f"bulk{i}", Priority.BULK)
        for i in range(2):
            tg.start_soon(take, f"web{i}", Priority.INTERACTIVE)
        await wait_until(lambda: limiter.statistics().queued == 8)
        queued = len(order)
        claims["bulk4"].promote()
        tg.start_soon(take, "web2", Priority.INTERACTIVE)  # after the promotion: behind it
        await wait_until(lambda: limiter.statistics().queued == 9)
    assert queued == 0
    assert order == ["web0", "web1", "bulk4", "web2", "bulk0", "bulk1", "bulk2", "bulk3", "bulk5"]
    # The promoted waiter was not charged to the share: it went uncapped, and refunds nothing.
    assert claims["bulk4"].priority is Priority.INTERACTIVE
    assert claims["bulk4"].share is None
    assert claims["bulk0"].share is share


@virtual_time
async def test_a_promoted_waiter_is_not_charged_to_its_share() -> None:
    limiter = RateLimiter("UserUpdate", 100.0, adaptive=False)
    share = ShareLimit(0.05)  # 5/s: one token, then one every 0.2 s
    await limiter.acquire(Priority.BULK, share=share)  # the share's only token
    claim = QuotaClaim()
    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: limiter.acquire(Priority.BULK, share=share, claim=claim))
        await wait_until(lambda: limiter.statistics().queued == 1)
        claim.promote()  # it goes on the category's bucket alone, at once
    assert anyio.current_time() - started < 0.01
    assert claim.granted
    assert claim.share is None
    # The share's bucket still owes its next token 0.2 s after the first: nothing was taken.
    assert share._ready(anyio.current_time(), 100.0) == pytest.approx(0.2, abs=0.01)


@virtual_time
async def test_promoting_a_claim_that_was_served_or_left_changes_nothing() -> None:
    limiter = RateLimiter("UserUpdate", 100.0, adaptive=False)
    share = ShareLimit(0.5)
    served = QuotaClaim()
    await limiter.acquire(Priority.BULK, share=share, claim=served)  # at once: the burst
    served.promote()
    assert served.granted
    assert (served.priority, served.share) == (Priority.BULK, share)  # as charged: refundable

    slow = RateLimiter("UserUpdate", 1.0, adaptive=False)
    await _drained(slow)
    left = QuotaClaim()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: slow.acquire(Priority.BULK, claim=left))
        await wait_until(lambda: slow.statistics().queued == 1)
        tg.cancel_scope.cancel()  # long before its turn
    assert not left.granted
    assert slow.statistics().queued == 0
    left.promote()
    assert slow.statistics().queued == 0  # not put back in any queue
    assert not left.granted


@virtual_time
async def test_a_claim_promoted_before_it_queues_queues_as_interactive() -> None:
    limiter = RateLimiter("UserUpdate", 100.0, adaptive=False)
    await _drained(limiter)
    claim = QuotaClaim()
    claim.promote()
    order: list[str] = []

    async def take(name: str, priority: Priority, claim: QuotaClaim | None = None) -> None:
        await limiter.acquire(priority, share=ShareLimit(0.5), claim=claim)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(take, "bulk0", Priority.BULK)
        await wait_until(lambda: limiter.statistics().queued == 1)
        tg.start_soon(take, "promoted", Priority.BULK, claim)
    assert order == ["promoted", "bulk0"]


@virtual_time
async def test_a_deadline_is_judged_on_the_promoted_place() -> None:
    # 10/s and 30 bulk callers queued: a bulk call due in 1 s cannot fit (its turn is 3 s
    # away), but promoted before it queues it has nobody ahead, fits, and goes next.
    limiter = RateLimiter("UserUpdate", 10.0, adaptive=False)
    await _drained(limiter)
    order: list[str] = []

    async def take(name: str, claim: QuotaClaim | None = None, due: float | None = None) -> None:
        await limiter.acquire(Priority.BULK, deadline=due, claim=claim)
        order.append(name)

    async with anyio.create_task_group() as tg:
        for i in range(30):
            tg.start_soon(take, f"bulk{i}")
        await wait_until(lambda: limiter.statistics().queued == 30)
        now = anyio.current_time()
        with pytest.raises(aiocognito.QuotaDeadlineError):
            await limiter.acquire(Priority.BULK, deadline=now + 1.0)
        early = QuotaClaim()
        early.promote()
        await take("early", early, now + 1.0)
        assert order == ["early"]

        # Queued at bulk (its deadline 10 s away fits there too), then promoted: it goes at
        # the next token, not after the 29 bulk callers still ahead of it.
        late = QuotaClaim()
        tg.start_soon(take, "late", late, anyio.current_time() + 10.0)
        await wait_until(lambda: late in limiter._queues.by_priority[Priority.BULK])
        assert len(limiter._queues.by_priority[Priority.BULK]) >= 20
        served = len(order)
        late.promote()
    assert order[served] == "late"
    assert sorted(order) == sorted(["early", "late", *(f"bulk{i}" for i in range(30))])


class _ClockedTransport(FakeTransport):
    """Notes when, on the event loop's clock, each call went on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_at: list[float] = []

    async def call(
        self, operation: str, params: Mapping[str, Any], *, secrets: Any = ()
    ) -> dict[str, Any]:
        self.sent_at.append(anyio.current_time())
        return await super().call(operation, params, secrets=secrets)


@virtual_time
async def test_a_thousand_calls_keep_to_the_quota() -> None:
    # Forty seconds of quota on the loop's clock; milliseconds of real time.
    rate, calls = 25.0, 1000
    burst = rate * 0.2  # the limiter's bucket holds a fifth of a second
    transport = _ClockedTransport()
    limits = aiocognito.Limits(user_update_rps=rate, adaptive=False, quota_group="thousand")
    async with client(transport, limits=limits) as cognito, anyio.create_task_group() as tg:
        started = anyio.current_time()
        for i in range(calls):
            tg.start_soon(cognito.admin_update_user_attributes, f"u{i}", {"nickname": "x"})
    sent = [t - started for t in transport.sent_at]
    assert sorted(c.params["Username"] for c in transport.sent) == sorted(
        f"u{i}" for i in range(calls)
    )
    # The model: a bucket of `burst` tokens, full at the start, refilled at `rate`. A dithered
    # request may go once part of its token has accrued, so the bucket may owe up to one token.
    # Then no stretch of time of length w sees more than burst + 1 + rate * w sends...
    for first, at in enumerate(sent):
        last = first
        while last + 1 < len(sent) and sent[last + 1] - at <= 1.0:
            last += 1
        assert last - first + 1 <= burst + 1 + rate * 1.0
    # ...and, with callers always waiting, the quota is not left unused: the last call goes
    # no later than the quota allows, and no sooner than the model allows.
    assert (calls - burst - 1) / rate <= sent[-1] <= calls / rate


@virtual_time
async def test_quota_deadline_fails_fast_without_sending() -> None:
    transport = FakeTransport()
    limits = aiocognito.Limits(user_update_rps=1.0, adaptive=False)
    async with client(transport, limits=limits) as cognito:
        # Pace on a fixed beat: the next token is a whole second away, so the outcome does not
        # depend on the dither's draw (which may make a request due sooner).
        bucket = cognito._limiters["UserUpdate"]._bucket
        bucket.dither = None
        await cognito.admin_update_user_attributes("alice", {"nickname": "a"})
        bucket.need = 1.0
        started = anyio.current_time()
        with pytest.raises(aiocognito.QuotaDeadlineError) as info:
            await cognito.admin_update_user_attributes("bob", {"nickname": "b"}, timeout=0.2)
        # Failed at once (a few turns of the loop), did not wait out the deadline.
        assert anyio.current_time() - started < 0.001
        assert isinstance(info.value, aiocognito.TooManyRequestsError)
        assert info.value.status is None
        stats = cognito.statistics()
    assert len(transport.sent) == 1
    assert stats.throttled == 0
    assert stats.categories["UserUpdate"].sent == 1


async def test_clients_on_one_loop_share_quota_buckets() -> None:
    a, b = FakeTransport(), FakeTransport()
    c = FakeTransport()
    async with (
        client(a, limits=aiocognito.Limits()) as one,
        client(b, limits=aiocognito.Limits(user_update_rps=20)) as two,
        client(c, limits=aiocognito.Limits(quota_group="other-account")) as three,
    ):
        assert one._limiters["UserUpdate"] is two._limiters["UserUpdate"]
        assert one._limiters["UserUpdate"] is not three._limiters["UserUpdate"]
        assert one.statistics().categories["UserUpdate"].ceiling == 20  # the lower one wins
        assert three.statistics().categories["UserUpdate"].ceiling == 25
        await two.aclose()  # the client with the lower quota leaves: it is raised back
        assert one.statistics().categories["UserUpdate"].ceiling == 25
        assert one.statistics().categories["UserUpdate"].rate == 25


def test_statistics_are_read_outside_the_event_loop() -> None:
    # As a metrics scrape or a test between runs of the loop reads them: the limiter keeps to
    # its loop's clock without the loop running.
    with asyncio.Runner() as runner:
        cognito = client(FakeTransport(), limits=aiocognito.Limits(quota_group="outside"))
        runner.run(cognito.__aenter__())
        runner.run(cognito.admin_update_user_attributes("alice", {"nickname": "a"}))
        stats = cognito.statistics()
        runner.run(cognito.aclose())
    assert (stats.categories["UserUpdate"].rate, stats.categories["UserUpdate"].sent) == (25.0, 1)


@virtual_time
async def test_statistics_per_category() -> None:
    transport = FakeTransport()
    transport.push(aiocognito.TooManyRequestsError("Rate exceeded", status=400), {})
    async with client(transport, limits=aiocognito.Limits(quota_group="stats")) as cognito:
        await cognito.admin_update_user_attributes("alice", {"nickname": "a"})
        await cognito.admin_get_user("alice")
        stats = cognito.statistics()
    update, read = stats.categories["UserUpdate"], stats.categories["UserRead"]
    assert (update.rate, update.sent, update.throttled, update.queued) == (25.0, 2, 1, 0)
    assert (read.rate, read.sent, read.throttled) == (120.0, 1, 0)
    assert stats.throttled == 1


async def test_changes_riding_with_a_cancelled_driver_land_with_its_call() -> None:
    """B drives a merged call carrying C's change; B is cancelled mid-call; C gets the answer."""

    class TwoGates(FakeTransport):
        def __init__(self) -> None:
            super().__init__()
            self.gates = [anyio.Event(), anyio.Event()]
            self.arrived = [anyio.Event(), anyio.Event()]

        async def call(
            self, operation: str, params: Mapping[str, Any], *, secrets: Any = ()
        ) -> dict[str, Any]:
            index = len(self.sent)
            result = await super().call(operation, params, secrets=secrets)
            if index < 2:
                self.arrived[index].set()
                await self.gates[index].wait()
            return result

    transport = TwoGates()
    outcome: dict[str, str] = {}
    async with client(transport) as cognito:

        async def update(name: str, value: str) -> None:
            await cognito.admin_update_user_attributes("alice", {f"custom:{name}": value})
            outcome[name] = "ok"

        async with anyio.create_task_group() as outer:
            outer.start_soon(update, "a", "A")
            await transport.arrived[0].wait()
            async with anyio.create_task_group() as b_group:
                b_group.start_soon(update, "b", "B")
                await wait_until(lambda: cognito.statistics().calls_started == 2)
                outer.start_soon(update, "c", "C")
                await wait_until(lambda: cognito.statistics().calls_started == 3)
                transport.gates[0].set()  # A finishes; B drives the merged [B, C] call
                await transport.arrived[1].wait()
                b_group.cancel_scope.cancel()  # B is cancelled while [B, C] is in flight
            assert "c" not in outcome
            transport.gates[1].set()  # the call lands: C's caller, now driving, gets its answer
        stats = cognito.statistics()
    assert outcome == {"a": "ok", "c": "ok"}
    assert len(transport.sent) == 2  # nothing was sent again
    merged = transport.sent[1].params
    assert {a["Name"] for a in merged["UserAttributes"]} == {"custom:b", "custom:c"}
    assert stats.active_lanes == 0
