"""The engine's promises when callers are cancelled, merges could change meaning, a change in a
batch is refused, or the client closes mid-flight."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aiocognito
from aiocognito._dispatch import belongs_to_change, may_merge
from aiocognito._errors import error_class_for_code
from aiocognito.testing import CustomAttribute, FakeCognito, PoolInfo
from tests.fakes import FakeTransport
from tests.gates import FAST_RETRY, UNLIMITED, Gates, client, wait_until
from tests.virtual_time import virtual_time

# ------------------------------------------------------------------------------------------
# 1. Cancelled callers never wedge a lane


@pytest.mark.parametrize("first_cancelled", ["waiter", "driver"])
async def test_cancelling_both_callers_of_a_merged_batch_leaves_no_wedged_lane(
    first_cancelled: str,
) -> None:
    """A in flight; B and C merge behind it; B drives [B, C]; both are cancelled, in either
    order. The user's next change goes through and no lane is left behind."""
    transport = Gates()
    async with client(transport) as cognito:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cognito.admin_update_user_attributes, "alice", {"nickname": "A"})
            await transport.arrived[0].wait()
            scopes: dict[str, anyio.CancelScope] = {}

            async def update(name: str) -> None:
                with anyio.CancelScope() as scope:
                    scopes[name] = scope
                    await cognito.admin_update_user_attributes("alice", {f"custom:{name}": name})

            tg.start_soon(update, "B")
            await wait_until(lambda: cognito.statistics().calls_started == 2)
            tg.start_soon(update, "C")
            await wait_until(lambda: cognito.statistics().calls_started == 3)
            transport.gates[0].set()
            await transport.arrived[1].wait()  # [B, C] is on the wire, driven by B
            order = ["C", "B"] if first_cancelled == "waiter" else ["B", "C"]
            for name in order:
                scopes[name].cancel()
                await anyio.lowlevel.checkpoint()
            transport.gates[1].set()
        transport.gates[2].set()
        with anyio.fail_after(5):
            await cognito.admin_update_user_attributes("alice", {"nickname": "D"})
        stats = cognito.statistics()
    assert transport.values() == [
        {"nickname": "A"},
        {"custom:B": "B", "custom:C": "C"},
        {"nickname": "D"},
    ]
    assert stats.active_lanes == 0
    assert stats.in_flight == 0


async def test_a_change_whose_caller_left_while_queued_is_never_sent() -> None:
    transport = Gates()
    async with client(transport) as cognito:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cognito.admin_update_user_attributes, "alice", {"nickname": "A"})
            await transport.arrived[0].wait()
            with anyio.move_on_after(0):
                await cognito.admin_update_user_attributes("alice", {"nickname": "gone"})
            tg.start_soon(cognito.admin_update_user_attributes, "alice", {"website": "w"})
            await wait_until(lambda: cognito.statistics().calls_started == 3)
            transport.gates[0].set()
            transport.gates[1].set()
        stats = cognito.statistics()
    assert transport.values() == [{"nickname": "A"}, {"website": "w"}]
    assert stats.active_lanes == 0


async def test_a_timed_out_caller_does_not_strand_the_changes_queued_behind_it() -> None:
    """The driver's own deadline passes mid-call: the next caller takes over the lane."""
    transport = Gates()
    async with client(transport) as cognito:
        results: list[str] = []

        async def later() -> None:
            await cognito.admin_update_user_attributes("alice", {"nickname": "later"})
            results.append("later")

        async with anyio.create_task_group() as tg:

            async def first() -> None:
                with pytest.raises(aiocognito.DeadlineExceededError, match="may still be applied"):
                    await cognito.admin_update_user_attributes(
                        "alice", {"nickname": "first"}, timeout=0.05
                    )
                results.append("first timed out")
                transport.gates[0].set()  # the abandoned call lands after its caller left

            tg.start_soon(first)
            await transport.arrived[0].wait()
            tg.start_soon(later)  # queued behind the first call
            transport.gates[1].set()
        stats = cognito.statistics()
    assert results == ["first timed out", "later"]
    assert transport.values() == [{"nickname": "first"}, {"nickname": "later"}]
    assert stats.active_lanes == 0


async def test_leaving_a_bulk_run_early_then_starting_another_finishes() -> None:
    async with FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=1) as fake:
        pool = fake.create_pool(custom_attributes=[CustomAttribute(name="seq")])
        users = fake.seed_users(pool.id, 3)
        async with connect(fake, pool) as cognito:
            rows = [
                aiocognito.AttributeUpdate(username=u, attributes={"custom:seq": str(n)})
                for n in range(20)
                for u in users
            ]
            async with cognito.bulk_update(rows) as outcomes:
                async for _outcome in outcomes:
                    break  # leave while rows for every user are queued and in flight
            again = [
                aiocognito.AttributeUpdate(username=u, attributes={"custom:seq": "final"})
                for u in users
            ]
            with anyio.fail_after(10):
                async with cognito.bulk_update(again) as outcomes:
                    done = [o async for o in outcomes]
            await wait_until(lambda: cognito.statistics().active_lanes == 0)
        assert [o.ok for o in done] == [True] * 3
        for user in users:
            assert fake.user_attributes(pool.id, user)["custom:seq"] == "final"


# ------------------------------------------------------------------------------------------
# 2. A merged call means what the calls one by one mean


@pytest.mark.parametrize(
    ("earlier", "later", "mergeable"),
    [
        ({"email_verified": "true"}, {"email": "new@example.com"}, False),
        ({"email": "new@example.com"}, {"email_verified": "true"}, False),
        ({"email": "a@example.com"}, {"email": "b@example.com"}, False),
        ({"email": "a@example.com", "email_verified": "true"}, {"email": ""}, False),
        ({"phone_number_verified": "true"}, {"phone_number": "+15550100"}, False),
        ({"phone_number": "+15550100"}, {"phone_number_verified": "false"}, False),
        ({"email": "a@example.com", "email_verified": "true"}, {"nickname": "n"}, True),
        ({"nickname": "n"}, {"email": "a@example.com"}, True),
        ({"email": "a@example.com"}, {"phone_number": "+15550100"}, True),
        ({"custom:tier": ""}, {"custom:tier": "gold"}, True),  # the later value wins
        ({"nickname": "a"}, {"nickname": ""}, True),  # a later blank deletes
    ],
)
def test_merge_rule_per_cognito_case(
    earlier: dict[str, str], later: dict[str, str], mergeable: bool
) -> None:
    assert may_merge([earlier], later) is mergeable


@pytest.mark.parametrize(
    ("earlier", "later", "mergeable"),
    [
        # A later change replaces all of an earlier one: one by one the earlier value would be
        # overwritten whether Cognito took it or not, so the merged call means the same.
        ([{"custom:tier": "a"}], {"custom:tier": "b"}, True),
        ([{"custom:tier": "a", "nickname": "n"}], {"custom:tier": "b", "nickname": "m"}, True),
        # Replacing part of one would send the rest without the part Cognito may have refused.
        ([{"custom:score": "abc", "custom:tier": "A"}], {"custom:score": "5"}, False),
        # What an earlier change still contributes is what counts.
        ([{"a": "1", "b": "1"}, {"a": "2"}], {"b": "2"}, True),
        ([{"a": "1", "b": "1", "c": "1"}, {"a": "2"}], {"b": "2"}, False),
        ([{"a": "1", "b": "1"}, {"a": "2", "b": "2"}], {"b": "3"}, False),
        ([{"a": "1", "b": "1"}, {"a": "2", "b": "2"}], {"a": "3", "b": "3"}, True),
        ([{"a": "1"}, {"b": "1"}], {"c": "1"}, True),
    ],
)
def test_merge_rule_never_sends_part_of_a_change(
    earlier: list[dict[str, str]], later: dict[str, str], mergeable: bool
) -> None:
    assert may_merge(earlier, later) is mergeable


async def test_verified_flag_then_new_email_leave_the_new_address_unverified() -> None:
    """The security case: merged, the new address would be applied verified with no code."""
    async with FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=2) as fake:
        pool = fake.create_pool()
        fake.create_user(pool.id, "alice", {"email": "old@example.com", "email_verified": "false"})
        async with connect(fake, pool) as cognito, anyio.create_task_group() as tg:
            tg.start_soon(cognito.admin_update_user_attributes, "alice", {"nickname": "n"})
            tg.start_soon(cognito.admin_update_user_attributes, "alice", {"email_verified": "true"})
            tg.start_soon(
                cognito.admin_update_user_attributes, "alice", {"email": "new@example.com"}
            )
        stored = fake.user_attributes(pool.id, "alice")
        codes = [(c.attribute, c.destination) for c in fake.sent_codes(pool.id, "alice")]
    assert stored["email"] == "new@example.com"
    assert stored["email_verified"] == "false"
    assert codes == [("email", "new@example.com")]


def _state(fake: FakeCognito, pool: PoolInfo, user: str) -> tuple[object, ...]:
    attributes = fake.user_attributes(pool.id, user)
    attributes.pop("sub")  # each user has its own
    return (
        attributes,
        fake.pending_attributes(pool.id, user),
        [(c.attribute, c.destination) for c in fake.sent_codes(pool.id, user)],
    )


_CHANGE = st.dictionaries(
    st.sampled_from(
        [
            "email",
            "email_verified",
            "phone_number",
            "phone_number_verified",
            "nickname",
            "custom:tier",
            "custom:score",  # a Number: some values are refused
        ]
    ),
    st.sampled_from(["", "1"]),
    min_size=1,
    max_size=3,
)


def _concrete(change: dict[str, str], n: int) -> dict[str, str]:
    """Give each attribute a value of the right shape; ``""`` stays a delete."""
    values = {
        "email": f"u{n}@example.com",
        "phone_number": f"+1555010{n % 10}",
        "email_verified": "true" if n % 2 else "false",
        "phone_number_verified": "true" if n % 3 else "false",
        "custom:score": str(n) if n % 2 else f"not-a-number-{n}",
    }
    return {k: (values.get(k, f"v{n}") if v else "") for k, v in change.items()}


class _Env:
    """One fake, one pool per rule set, and one client, on a loop kept across examples."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.count = 0
        self.pools: dict[bool, PoolInfo] = {}

    async def start(self) -> None:
        self.fake = FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=3)
        await self.fake.start()
        for verify_first in (False, True):
            self.pools[verify_first] = self.fake.create_pool(
                custom_attributes=[
                    CustomAttribute(name="tier"),
                    CustomAttribute(name="score", type="Number"),
                ],
                auto_verified_attributes=("email", "phone_number"),
                require_verification_before_update=("email",) if verify_first else (),
            )
        self.cognito = aiocognito.CognitoClient(
            region_name="us-east-1",
            endpoint_url=self.fake.endpoint_url,
            limits=UNLIMITED,
            retry=FAST_RETRY,
            aws_access_key_id="k",
            aws_secret_access_key="s",
        )
        await self.cognito.__aenter__()

    async def stop(self) -> None:
        await self.cognito.aclose()
        await self.fake.stop()


@pytest.fixture(scope="module")
def env() -> Any:
    env = _Env()
    env.runner.run(env.start())
    try:
        yield env
    finally:
        env.runner.run(env.stop())
        env.runner.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.lists(_CHANGE, min_size=2, max_size=6),
    admin=st.booleans(),
    verify_first=st.booleans(),
)
def test_merged_calls_leave_what_calls_one_by_one_leave(
    env: _Env, changes: list[dict[str, str]], admin: bool, verify_first: bool
) -> None:
    """Against the fake's rules: the same changes, awaited one by one or queued together
    (so they merge), leave the same attributes, pending values and codes sent."""
    concrete = [_concrete(c, n) for n, c in enumerate(changes)]
    fake, pool, cognito = env.fake, env.pools[verify_first], env.cognito
    env.count += 1
    one, together = f"one{env.count}", f"all{env.count}"

    async def main() -> None:
        start = {"email": "start@example.com", "email_verified": "true"}
        fake.create_user(pool.id, one, start)
        fake.create_user(pool.id, together, start)
        tokens = {u: fake.issue_token(pool.id, u) for u in (one, together)}

        async def send(user: str, change: dict[str, str]) -> None:
            try:
                if admin:
                    await cognito.admin_update_user_attributes(user, change, user_pool_id=pool.id)
                else:
                    await cognito.update_user_attributes(tokens[user], change)
            except aiocognito.CognitoError:
                pass  # refused alike either way; the states are compared

        for change in concrete:
            await send(one, change)
        async with anyio.create_task_group() as tg:
            for change in concrete:
                tg.start_soon(send, together, change)

    env.runner.run(main())
    assert _state(fake, pool, together) == _state(fake, pool, one)


async def test_merging_still_saves_calls() -> None:
    transport = Gates()
    async with client(transport) as cognito, anyio.create_task_group() as tg:
        tg.start_soon(cognito.admin_update_user_attributes, "alice", {"nickname": "0"})
        await transport.arrived[0].wait()
        for n in range(1, 6):
            tg.start_soon(cognito.admin_update_user_attributes, "alice", {"custom:n": str(n)})
        await wait_until(lambda: cognito.statistics().calls_started == 6)
        transport.gates[0].set()
        transport.gates[1].set()
    assert cognito.statistics().calls_saved == 4
    assert len(transport.sent) == 2


# ------------------------------------------------------------------------------------------
# 3. A refused merged call is split, not shared


async def test_one_bad_change_fails_alone_and_names_only_its_own_attribute() -> None:
    async with FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=4) as fake:
        pool = fake.create_pool(custom_attributes=[CustomAttribute(name="tier")])
        fake.create_user(pool.id, "alice")
        results: dict[str, BaseException | None] = {}
        async with connect(fake, pool) as cognito:

            async def update(label: str, change: dict[str, str]) -> None:
                try:
                    await cognito.admin_update_user_attributes("alice", change)
                    results[label] = None
                except aiocognito.AiocognitoError as exc:
                    results[label] = exc

            async with anyio.create_task_group() as tg:
                tg.start_soon(update, "first", {"website": "w"})
                tg.start_soon(update, "nickname", {"nickname": "secret-nick"})
                tg.start_soon(update, "tier", {"custom:tier": "gold"})
                tg.start_soon(update, "typo", {"custom:typo": "x"})
                tg.start_soon(update, "after", {"locale": "fr"})
            stats = cognito.statistics()
        stored = fake.user_attributes(pool.id, "alice")
    assert {k for k, v in results.items() if v is None} == {"first", "nickname", "tier", "after"}
    error = results["typo"]
    assert isinstance(error, aiocognito.InvalidParameterError)
    assert "custom:typo" in str(error)
    for other in ("nickname", "secret-nick", "custom:tier", "gold", "locale"):
        assert other not in str(error)
        assert other not in repr(error)
    assert stored["nickname"] == "secret-nick"
    assert stored["custom:tier"] == "gold"
    assert stored["locale"] == "fr"
    assert "custom:typo" not in stored
    assert stats.active_lanes == 0


async def test_split_resends_in_order_before_what_queued_behind() -> None:
    transport = Gates()
    refusal = aiocognito.AliasExistsError(
        "An account with the given email already exists.", status=400
    )
    transport.push({}, refusal)  # the first call succeeds; the merged one is refused
    outcomes: dict[str, str] = {}
    async with client(transport) as cognito:

        async def update(label: str, change: dict[str, str]) -> None:
            try:
                await cognito.admin_update_user_attributes("alice", change)
                outcomes[label] = "ok"
            except aiocognito.AliasExistsError:
                outcomes[label] = "alias"

        def answer(_op: str, params: Mapping[str, Any]) -> dict[str, Any]:
            if any(a["Value"] == "taken@example.com" for a in params["UserAttributes"]):
                raise refusal
            return {}

        transport.handler = answer
        async with anyio.create_task_group() as tg:
            tg.start_soon(update, "a", {"nickname": "a"})
            await transport.arrived[0].wait()
            tg.start_soon(update, "b", {"custom:x": "b"})
            tg.start_soon(update, "c", {"email": "taken@example.com"})
            tg.start_soon(update, "d", {"custom:x": "d"})
            await wait_until(lambda: cognito.statistics().calls_started == 4)
            for gate in transport.gates:
                gate.set()
        stats = cognito.statistics()
    assert outcomes == {"a": "ok", "b": "ok", "c": "alias", "d": "ok"}
    assert transport.values() == [
        {"nickname": "a"},
        {"custom:x": "d", "email": "taken@example.com"},  # merged, refused
        {"custom:x": "b"},  # then one by one, in order
        {"email": "taken@example.com"},
        {"custom:x": "d"},
    ]
    assert stats.calls_saved == 0
    assert stats.splits == 1


@pytest.mark.parametrize(
    "error",
    [
        aiocognito.UserNotFoundError("User does not exist.", status=400),
        aiocognito.NotAuthorizedError("Access Token has expired", status=400),
        aiocognito.InternalErrorError("boom", status=500),
    ],
)
async def test_errors_about_the_user_or_service_reach_every_merged_caller(
    error: aiocognito.CognitoError,
) -> None:
    transport = Gates()
    transport.push({})
    transport.handler = lambda _op, _p: (_ for _ in ()).throw(error)
    retry = aiocognito.RetryPolicy(max_attempts=1)
    failures: list[BaseException] = []
    async with client(transport, retry=retry) as cognito:

        async def update(change: dict[str, str]) -> None:
            try:
                await cognito.admin_update_user_attributes("alice", change)
            except aiocognito.CognitoError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(update, {"nickname": "a"})
            await transport.arrived[0].wait()
            tg.start_soon(update, {"custom:x": "b"})
            tg.start_soon(update, {"custom:y": "c"})
            await wait_until(lambda: cognito.statistics().calls_started == 3)
            for gate in transport.gates:
                gate.set()
    assert failures == [error, error]
    assert len(transport.sent) == 2  # not split


@pytest.mark.parametrize(
    ("code", "message", "split"),
    [
        ("InvalidParameterException", "user.custom:x: Attribute does not exist in the schema.", 1),
        ("AliasExistsException", "An account with the given email already exists.", 1),
        ("UserLambdaValidationException", "PreUpdate failed", 1),
        ("CodeDeliveryFailureException", "could not deliver", 1),
        ("NotAuthorizedException", "A client attempted to write unauthorized attribute", 1),
        ("SomeNewValidationException", "something about the input", 1),
        ("NotAuthorizedException", "Access Token has expired", 0),
        ("UserNotFoundException", "User does not exist.", 0),
        ("TooManyRequestsException", "Rate exceeded", 0),
        ("InternalErrorException", "boom", 0),
    ],
)
def test_which_refusals_belong_to_a_change(code: str, message: str, split: int) -> None:
    status = 500 if code == "InternalErrorException" else 400
    error = error_class_for_code(code)(message, code=code, status=status)
    assert belongs_to_change(error) is bool(split)
    assert not belongs_to_change(aiocognito.QuotaDeadlineError("quota"))
    assert not belongs_to_change(aiocognito.TransportError("reset"))


# ------------------------------------------------------------------------------------------
# 4. Closing is prompt and clean


@virtual_time
async def test_close_fails_queued_calls_at_once_without_taking_quota() -> None:
    transport = FakeTransport()
    limits = aiocognito.Limits(user_update_rps=1.0, adaptive=False, quota_group="close-queued")
    cognito = client(transport, limits=limits)
    await cognito.__aenter__()
    await cognito.admin_update_user_attributes("u0", {"nickname": "x"})  # the one token
    errors: list[BaseException] = []
    ended: list[float] = []

    async def update(n: int) -> None:
        try:
            await cognito.admin_update_user_attributes(f"u{n}", {"nickname": "x"}, timeout=60)
        except BaseException as exc:
            errors.append(exc)
            ended.append(anyio.current_time())
            if not isinstance(exc, aiocognito.AiocognitoError):
                raise

    async with anyio.create_task_group() as tg:
        for n in range(1, 10):
            tg.start_soon(update, n)
        await wait_until(lambda: cognito.statistics().categories["UserUpdate"].queued == 9)
        closed_at = anyio.current_time()
        await cognito.aclose()
    assert len(errors) == 9
    assert all(isinstance(e, aiocognito.ClientClosedError) for e in errors)
    assert all(not e.sent for e in errors if isinstance(e, aiocognito.ClientClosedError))
    assert max(ended) - closed_at < 0.001  # at once: not one more token of the 1/s quota
    assert len(transport.sent) == 1
    assert cognito.statistics().categories["UserUpdate"].sent == 1
    with pytest.raises(aiocognito.ClientClosedError):
        await cognito.admin_update_user_attributes("u1", {"nickname": "x"})
    assert isinstance(aiocognito.ClientClosedError(), RuntimeError)


@virtual_time
async def test_close_fails_a_call_on_the_wire_and_says_it_may_have_applied() -> None:
    transport = Gates()
    cognito = client(transport)
    await cognito.__aenter__()
    caught: list[aiocognito.ClientClosedError] = []

    async def update() -> None:
        with pytest.raises(aiocognito.ClientClosedError) as info:
            await cognito.admin_update_user_attributes("alice", {"nickname": "x"})
        caught.append(info.value)

    async with anyio.create_task_group() as tg:
        tg.start_soon(update)
        tg.start_soon(update)  # queued behind it
        await wait_until(lambda: cognito.statistics().calls_started == 2)
        await transport.arrived[0].wait()
        with anyio.fail_after(0.1):
            await cognito.aclose()
    assert sorted(e.sent for e in caught) == [False, True]
    assert cognito.statistics().in_flight == 0
    assert len(transport.sent) == 1


@virtual_time
async def test_a_bulk_run_on_a_closing_client_ends_with_one_error() -> None:
    transport = FakeTransport()
    limits = aiocognito.Limits(user_update_rps=2.0, adaptive=False, quota_group="close-bulk")
    cognito = client(transport, limits=limits)
    await cognito.__aenter__()
    rows = [
        aiocognito.AttributeUpdate(username=f"u{n}", attributes={"nickname": "x"})
        for n in range(50)
    ]

    async def run() -> None:
        async with cognito.bulk_update(rows) as outcomes:
            async for _outcome in outcomes:
                await cognito.aclose()

    with pytest.raises(aiocognito.ClientClosedError):
        await run()
    assert len(transport.sent) < 5  # the queued rows were never sent


# ------------------------------------------------------------------------------------------
# Helpers


@asynccontextmanager
async def connect(fake: FakeCognito, pool: PoolInfo) -> AsyncIterator[aiocognito.CognitoClient]:
    async with aiocognito.CognitoClient(
        region_name="us-east-1",
        user_pool_id=pool.id,
        endpoint_url=fake.endpoint_url,
        limits=UNLIMITED,
        retry=FAST_RETRY,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ) as cognito:
        yield cognito


async def test_a_refusal_after_a_lost_attempt_is_still_split() -> None:
    """[nickname, custom:typo] merged: a 500 before Cognito looked at it, then the refusal.
    The refusal says the call applied nothing, so the valid change goes on alone."""
    transport = Gates()
    refusal = aiocognito.InvalidParameterError(
        "user.custom:typo: Attribute does not exist in the schema.", status=400
    )
    outage = aiocognito.InternalErrorError("Internal server error", status=500)
    answers: list[Any] = [{}, outage]

    def answer(_op: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if answers:
            reply = answers.pop(0)
            if isinstance(reply, BaseException):
                raise reply
            return dict(reply)
        if any(a["Name"] == "custom:typo" for a in params["UserAttributes"]):
            raise refusal
        return {}

    transport.handler = answer
    outcomes: dict[str, str] = {}
    async with client(transport) as cognito:

        async def update(label: str, change: dict[str, str]) -> None:
            try:
                await cognito.admin_update_user_attributes("alice", change)
                outcomes[label] = "ok"
            except aiocognito.InvalidParameterError as exc:
                outcomes[label] = str(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(update, "first", {"website": "w"})
            await transport.arrived[0].wait()
            tg.start_soon(update, "nick", {"nickname": "secret-nick"})
            tg.start_soon(update, "typo", {"custom:typo": "x"})
            await wait_until(lambda: cognito.statistics().calls_started == 3)
            for gate in transport.gates:
                gate.set()
    assert outcomes["first"] == outcomes["nick"] == "ok"
    assert "custom:typo" in outcomes["typo"]
    assert "nickname" not in outcomes["typo"]
    assert [sorted(v) for v in transport.values()] == [
        ["website"],
        ["custom:typo", "nickname"],  # the 500
        ["custom:typo", "nickname"],  # the same request again: refused
        ["nickname"],  # split: one by one
        ["custom:typo"],
    ]
