"""A fake Cognito user-pool server for tests, benchmarks and demos.

It enforces what Cognito documents and moto does not: unknown and immutable attributes, value
and name lengths, blank-value deletes, verification before update, code delivery, account-wide
quotas per category and a per-user write limit. It also injects faults on demand::

    from aiocognito.testing import FakeCognito, Fault

    async with FakeCognito(user_update_rps=25) as fake:
        pool = fake.create_pool(custom_attributes=[CustomAttribute(name="tier")])
        fake.create_user(pool.id, "alice", {"email": "alice@example.com"})
        token = fake.issue_token(pool.id, "alice")
        fake.faults.add(Fault.throttle(count=2))
        ...  # point any Cognito client at fake.endpoint_url
        assert fake.user_attributes(pool.id, "alice")["custom:tier"] == "gold"
"""

from ._backend import AppliedUpdate, CustomAttribute, PoolInfo, SentCode
from ._faults import Fault, Faults, Latency
from ._process import FakeCognitoProcess
from ._quota import QuotaStats
from ._rules import CATEGORY
from ._server import FakeCognito, FakeStats

__all__ = [
    "CATEGORY",
    "AppliedUpdate",
    "CustomAttribute",
    "FakeCognito",
    "FakeCognitoProcess",
    "FakeStats",
    "Fault",
    "Faults",
    "Latency",
    "PoolInfo",
    "QuotaStats",
    "SentCode",
]
