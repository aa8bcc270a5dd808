"""Merging lets a later change mask an earlier change's bad value. Cognito applies a call whole
or not at all: A = {custom:score: "abc" (not a Number), custom:tier: "A"} is refused one by
one, so custom:tier never becomes "A". Merged with B = {custom:score: "5"}, the request carries
score=5, tier=A and succeeds: A is reported applied and tier=A is stored."""

from __future__ import annotations

import anyio

import aiocognito
from aiocognito.testing import CustomAttribute, FakeCognito, PoolInfo
from tests.test_engine_adversity import connect


async def _apply(
    fake: FakeCognito,
    pool: PoolInfo,
    user: str,
    changes: list[tuple[str, dict[str, str]]],
    *,
    together: bool,
) -> tuple[dict[str, object], int]:
    outcomes: dict[str, object] = {}
    async with connect(fake, pool) as cognito:

        async def send(label: str, change: dict[str, str]) -> None:
            try:
                await cognito.admin_update_user_attributes(user, change)
                outcomes[label] = "ok"
            except aiocognito.CognitoError as exc:
                outcomes[label] = exc.code

        with anyio.fail_after(10):
            if together:
                async with anyio.create_task_group() as tg:
                    for label, change in changes:
                        tg.start_soon(send, label, change)
                        await anyio.lowlevel.checkpoint()
            else:
                for label, change in changes:
                    await send(label, change)
        saved = cognito.statistics().calls_saved
    return outcomes, saved


async def test_merged_equals_one_by_one_when_a_later_change_masks_a_bad_value() -> None:
    changes = [
        ("X", {"nickname": "x"}),  # on the wire while A and B queue and merge
        ("A", {"custom:score": "abc", "custom:tier": "A"}),
        ("B", {"custom:score": "5"}),
    ]
    async with FakeCognito(user_update_rps=None, per_user_write_rps=None, seed=5) as fake:
        pool = fake.create_pool(
            custom_attributes=[
                CustomAttribute(name="score", type="Number"),
                CustomAttribute(name="tier"),
            ]
        )
        fake.create_user(pool.id, "one")
        fake.create_user(pool.id, "all")
        one, _ = await _apply(fake, pool, "one", changes, together=False)
        together, saved = await _apply(fake, pool, "all", changes, together=True)
        state_one = fake.user_attributes(pool.id, "one")
        state_all = fake.user_attributes(pool.id, "all")

    def strip(state: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in state.items() if k.startswith("custom:") or k == "nickname"}

    print("one by one:", one, strip(state_one))
    print("together:  ", together, strip(state_all), "calls_saved", saved)
    assert strip(state_all) == strip(state_one)
    assert together == one
