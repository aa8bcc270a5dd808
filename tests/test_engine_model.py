"""A model-based test of the engine's promise, against the shipped fake.

Random interleavings of updates, deletes and verification calls for a few users, with random
cancellations, deadlines, server faults and closes. After each run the history is checked
against a model, not against the engine's own bookkeeping:

* every user's final state equals the calls applied one by one, in submission order: the calls
  that reported success, plus some subset of those that failed ambiguously (they could have
  been applied: a lost answer, an applied-then-500, a caller cancelled mid-call);
* a change that was never sent was never applied;
* each caller got exactly one result or error, nothing hangs, and no lane is left behind;
* a refused change fails alone: no call without a bad attribute gets ``InvalidParameterError``,
  and no error names another call's attributes.

The default run takes well under a minute; ``HYPOTHESIS_PROFILE=long`` runs many more examples
(registered in ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import aiocognito
from aiocognito.testing import CustomAttribute, FakeCognito, Fault, PoolInfo

RETRY = aiocognito.RetryPolicy(max_attempts=3, backoff_base=0.001, backoff_cap=0.002)
TOKEN_USER, ADMIN_USERS = "t", ("a", "b")
PLAIN = ("nickname", "website", "custom:tier")
BAD = "custom:typo"  # not in the schema: Cognito refuses any call carrying it
FAULT_KINDS = ("throttle", "internal_error", "internal_error_after", "reset_before", "reset_after")
MAX_AMBIGUOUS = 14  # per user; 2**14 candidate histories are still quick to check


@attrs.define(eq=False)
class Call:
    """One public call as the test made it, and what it reported."""

    number: int
    user: str
    kind: str  # update, delete, code or verify
    change: dict[str, str]  # update: name -> value; delete: name -> ""
    task: asyncio.Task[None] | None = None
    outcomes: list[object] = attrs.field(factory=list)
    cancelled: bool = False

    @property
    def names(self) -> set[str]:
        return set(self.change)


class _Env:
    """The event loop, fake and pools shared by every example (each example has new users)."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.fake = FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=11)
        self.runner.run(self.fake.start())
        self.pool: PoolInfo = self.fake.create_pool(
            custom_attributes=[CustomAttribute(name="tier")]
        )
        self.examples = 0

    def close(self) -> None:
        self.runner.run(self.fake.stop())
        self.runner.close()


_ENV: _Env | None = None


def _env() -> _Env:
    global _ENV  # noqa: PLW0603 - one loop and server for the whole module, built lazily
    if _ENV is None:
        _ENV = _Env()
    return _ENV


@pytest.fixture(scope="module", autouse=True)
def _shared_env() -> Any:
    yield
    global _ENV  # noqa: PLW0603
    if _ENV is not None:
        _ENV.close()
        _ENV = None


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        env = _env()
        env.examples += 1
        self.env, self.fake, self.pool = env, env.fake, env.pool
        self.fake.faults.clear()
        tag = f"x{env.examples}"
        self.users = {name: f"{name}{tag}" for name in (TOKEN_USER, *ADMIN_USERS)}
        start = {"email": f"start-{tag}@example.com", "email_verified": "true"}
        for username in self.users.values():
            self.fake.create_user(self.pool.id, username, start)
        self.start = {u: self._stored(u) for u in self.users.values()}  # the model's initial state
        self.token = self.fake.issue_token(self.pool.id, self.users[TOKEN_USER])
        self.calls: list[Call] = []
        self.clients = 0
        self.cognito = self._open()

    # -- plumbing ----------------------------------------------------------------------------

    def _open(self) -> aiocognito.CognitoClient:
        self.clients += 1
        cognito = aiocognito.CognitoClient(
            region_name="us-east-1",
            user_pool_id=self.pool.id,
            endpoint_url=self.fake.endpoint_url,
            # A quota of its own per client: limiters are shared per event loop and group.
            limits=aiocognito.Limits(
                user_update_rps=400.0,
                quota_group=f"model-{self.env.examples}-{self.clients}",
            ),
            retry=RETRY,
            aws_access_key_id="k",
            aws_secret_access_key="s",
        )
        self.env.runner.run(cognito.__aenter__())
        return cognito

    def _stored(self, username: str) -> dict[str, str]:
        stored = self.fake.user_attributes(self.pool.id, username)
        stored.pop("sub", None)
        return stored

    def _submit(self, call: Call, timeout: float | None) -> None:
        cognito, username = self.cognito, self.users[call.user]

        async def run() -> None:
            try:
                if call.kind == "update" and call.user == TOKEN_USER:
                    await cognito.update_user_attributes(self.token, call.change, timeout=timeout)
                elif call.kind == "update":
                    await cognito.admin_update_user_attributes(
                        username, call.change, timeout=timeout
                    )
                elif call.kind == "delete" and call.user == TOKEN_USER:
                    await cognito.delete_user_attributes(
                        self.token, list(call.change), timeout=timeout
                    )
                elif call.kind == "delete":
                    await cognito.admin_delete_user_attributes(
                        username, list(call.change), timeout=timeout
                    )
                elif call.kind == "code":
                    await cognito.get_user_attribute_verification_code(
                        self.token, "email", timeout=timeout
                    )
                else:
                    codes = self.fake.sent_codes(self.pool.id, username)
                    code = codes[-1].code if codes else "000000"
                    await cognito.verify_user_attribute(self.token, "email", code, timeout=timeout)
            except asyncio.CancelledError:
                call.outcomes.append("cancelled")
                raise
            except Exception as exc:
                call.outcomes.append(exc)
            else:
                call.outcomes.append("ok")

        async def spawn() -> asyncio.Task[None]:
            task = asyncio.get_running_loop().create_task(run())
            await asyncio.sleep(0)  # let it start: it enqueues in submission order
            return task

        call.task = self.env.runner.run(spawn())
        self.calls.append(call)

    def _pending(self) -> list[Call]:
        return [c for c in self.calls if c.task is not None and not c.task.done()]

    def _run_for(self, seconds: float) -> None:
        self.env.runner.run(asyncio.sleep(seconds))

    def _drain(self, limit: float) -> None:
        async def wait() -> None:
            tasks = [c.task for c in self._pending() if c.task is not None]
            if tasks:
                with anyio.fail_after(limit):
                    await asyncio.wait(tasks)

        self.env.runner.run(wait())

    # -- rules -------------------------------------------------------------------------------

    @rule(
        user=st.sampled_from((TOKEN_USER, *ADMIN_USERS)),
        names=st.lists(
            st.sampled_from((*PLAIN, "email", "email_verified", BAD)),
            min_size=1,
            max_size=3,
            unique=True,
        ),
        delete=st.booleans(),
        verified=st.sampled_from(("true", "false")),
        timeout=st.sampled_from((None, None, None, 0.002, 0.02, 0.2)),
    )
    def update(
        self, user: str, names: list[str], delete: bool, verified: str, timeout: float | None
    ) -> None:
        n = len(self.calls)
        change: dict[str, str] = {}
        for i, name in enumerate(names):
            if name == "email_verified":
                change[name] = verified
            elif name == "email":
                change[name] = f"e{n}-{self.env.examples}@example.com"
            else:
                change[name] = "" if delete and i == 0 else f"v{n}"
        self._submit(Call(n, user, "update", change), timeout)

    @rule(
        user=st.sampled_from((TOKEN_USER, *ADMIN_USERS)),
        changes=st.lists(
            st.tuples(
                st.lists(
                    st.sampled_from((*PLAIN, "email", "email_verified", BAD)),
                    min_size=1,
                    max_size=2,
                    unique=True,
                ),
                st.sampled_from(("true", "false")),
            ),
            min_size=2,
            max_size=4,
        ),
    )
    def burst(self, user: str, changes: list[tuple[list[str], str]]) -> None:
        """Several changes for one user in one turn of the loop: they queue and merge."""
        for names, verified in changes:
            self.update(user, names, delete=False, verified=verified, timeout=None)

    @rule(
        user=st.sampled_from((TOKEN_USER, *ADMIN_USERS)),
        names=st.lists(st.sampled_from(PLAIN), min_size=1, max_size=2, unique=True),
        timeout=st.sampled_from((None, None, 0.02)),
    )
    def delete(self, user: str, names: list[str], timeout: float | None) -> None:
        self._submit(Call(len(self.calls), user, "delete", dict.fromkeys(names, "")), timeout)

    @rule(kind=st.sampled_from(("code", "verify")), timeout=st.sampled_from((None, 0.02)))
    def verification(self, kind: str, timeout: float | None) -> None:
        self._submit(Call(len(self.calls), TOKEN_USER, kind, {}), timeout)

    @precondition(lambda self: bool(self.calls))
    @rule(back=st.integers(min_value=1, max_value=4))
    def cancel(self, back: int) -> None:
        # Drawn by position, not from the calls still running, so that the data drawn does
        # not depend on timing (hypothesis replays and shrinks examples).
        call = self.calls[-min(back, len(self.calls))]
        assert call.task is not None
        if not call.task.done():
            call.cancelled = True
            call.task.cancel()

    @rule(seconds=st.sampled_from((0.0, 0.001, 0.005, 0.02)))
    def run(self, seconds: float) -> None:
        self._run_for(seconds)

    @rule(
        kinds=st.lists(st.sampled_from(FAULT_KINDS), max_size=2, unique=True),
        probability=st.sampled_from((0.05, 0.2, 0.5)),
    )
    def faults(self, kinds: list[str], probability: float) -> None:
        self.fake.faults.clear()
        self.fake.faults.add(
            *(Fault(kind=kind, probability=probability) for kind in kinds)  # type: ignore[arg-type]
        )

    @rule()
    def close_and_reopen(self) -> None:
        pending = self._pending()
        closing = self.cognito

        async def close() -> float:
            started = anyio.current_time()
            await closing.aclose()
            tasks = [c.task for c in pending if c.task is not None]
            if tasks:
                with anyio.fail_after(5):
                    await asyncio.wait(tasks)
            return anyio.current_time() - started

        took = self.env.runner.run(close())
        assert took < 1.0, f"closing took {took:.3f} s"
        for call in pending:
            if not call.cancelled:
                assert call.outcomes, call
                outcome = call.outcomes[-1]
                assert outcome == "ok" or isinstance(outcome, aiocognito.AiocognitoError), outcome
        self.cognito = self._open()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def exactly_one_outcome(self) -> None:
        for call in self.calls:
            assert len(call.outcomes) <= 1, call

    def teardown(self) -> None:
        try:
            self.fake.faults.clear()
            self._drain(30.0)  # nothing hangs

            async def lanes_empty() -> None:
                with anyio.fail_after(5):  # a cancelled caller's last flight still lands
                    while self.cognito.statistics().active_lanes:
                        await anyio.lowlevel.checkpoint()

            self.env.runner.run(lanes_empty())
            stats = self.cognito.statistics()
            assert stats.in_flight == 0
        finally:
            self.env.runner.run(self.cognito.aclose())
        for call in self.calls:
            assert len(call.outcomes) == 1, call
            self._check_errors(call)
        for user in self.users:
            self._check_history(user)

    # -- the model ---------------------------------------------------------------------------

    def _check_errors(self, call: Call) -> None:
        outcome = call.outcomes[0]
        if isinstance(outcome, aiocognito.InvalidParameterError) and call.kind in (
            "update",
            "delete",
        ):
            assert BAD in call.change, f"{call}: a valid change was refused with {outcome!r}"
        if isinstance(outcome, BaseException):
            text = f"{outcome} {outcome!r}"
            mentioned = {name for name in (*PLAIN, BAD) if name in text}
            assert mentioned <= call.names, f"{call}: error names {mentioned - call.names}"

    @staticmethod
    def _applied(call: Call) -> str:
        """'yes', 'no' or 'maybe': whether the call's change reached the user."""
        outcome = call.outcomes[0]
        if outcome == "ok":
            return "yes"
        if BAD in call.change:
            return "no"  # refused whole, every time it was sent
        if isinstance(outcome, aiocognito.QuotaDeadlineError | aiocognito.AttributeValidationError):
            return "no"
        if isinstance(outcome, aiocognito.ClientClosedError) and not outcome.sent:
            return "no"
        if isinstance(outcome, aiocognito.DeadlineExceededError) and "not sent" in str(outcome):
            return "no"
        # Cancelled, a lost answer, or an error after an attempt that may have applied (an
        # applied-then-500 before a final refusal): the change may have landed.
        return "maybe"

    def _apply(self, state: dict[str, str], call: Call) -> None:
        """Cognito's rules (as the fake documents them) for one call, applied in place."""
        admin = call.user != TOKEN_USER
        if call.kind == "delete":
            for name in call.change:
                state.pop(name, None)
        elif call.kind == "verify":
            state["email_verified"] = "true"
        elif call.kind == "update" and BAD not in call.change:
            verified_now = admin and call.change.get("email_verified") == "true"
            changes: dict[str, str] = {}
            for name, value in call.change.items():
                if name == "email" and value and value != state.get("email"):
                    changes["email"] = value
                    if not verified_now:
                        changes["email_verified"] = "false"
                elif name == "email_verified":
                    changes.setdefault(name, value)
                else:
                    changes[name] = value
            for name, value in changes.items():
                if value:
                    state[name] = value
                else:
                    state.pop(name, None)

    def _check_history(self, user: str) -> None:
        username = self.users[user]
        final = self._stored(username)
        calls = [c for c in self.calls if c.user == user]
        verdicts = [self._applied(c) for c in calls]
        maybes = [i for i, v in enumerate(verdicts) if v == "maybe"]
        # A retry after an attempt that may have applied (applied, then a 500 or a reset)
        # resends the same request, so a call can land twice. Twice differs from once only
        # for a change of address: the second sees the address unchanged and keeps the
        # verified flag the first reset. Those calls may count twice.
        twice = [
            i
            for i, c in enumerate(calls)
            if verdicts[i] != "no" and c.kind == "update" and "email" in c.change
        ]
        if len(maybes) + len(twice) > MAX_AMBIGUOUS:
            return  # too many candidate histories to enumerate; rare with these step counts
        for chosen, doubled in itertools.product(_subsets(maybes), _subsets(twice)):
            state = dict(self.start[username])
            picked = set(chosen)
            for i, call in enumerate(calls):
                if verdicts[i] == "yes" or i in picked:
                    self._apply(state, call)
                    if i in doubled:
                        self._apply(state, call)
            if state == final:
                return
        history = [(c.kind, c.change, verdicts[i]) for i, c in enumerate(calls)]
        raise AssertionError(
            f"{username}: final state {final} is not the calls applied in order: {history}"
        )


def _subsets(items: list[int]) -> list[set[int]]:
    """Every subset of ``items``, the empty one first."""
    return [
        set(chosen) for k in range(len(items) + 1) for chosen in itertools.combinations(items, k)
    ]


LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
_PROFILE = settings()
EngineMachine.TestCase.settings = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # The default run stays well under a minute; the long profile sets its own counts.
    max_examples=_PROFILE.max_examples if LONG else 40,
    stateful_step_count=_PROFILE.stateful_step_count if LONG else 30,
)
test_engine_model = EngineMachine.TestCase
