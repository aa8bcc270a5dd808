"""The examples run against the fake server, as a user would run them."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient, TestServer

from aiocognito.testing import CustomAttribute, FakeCognito
from tests.redis_server import RedisServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_bulk_migration_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load("bulk_migration")
    async with FakeCognito(user_update_rps=500, seed=3) as fake:
        pool = fake.create_pool(custom_attributes=[CustomAttribute(name="tier")])
        fake.seed_users(pool.id, 20)
        path = tmp_path / "migration.jsonl"
        rows = [{"username": f"user{i}", "attributes": {"custom:tier": f"t{i}"}} for i in range(20)]
        rows.append({"username": "user1", "attributes": {"tier": "unprefixed"}})
        path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        import os

        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = "k", "s"
        try:
            failed = await example.migrate(
                str(path), pool.id, endpoint_url=fake.endpoint_url, rps=500
            )
            again = await example.migrate(
                str(path), pool.id, endpoint_url=fake.endpoint_url, rps=500
            )
        finally:
            del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
        assert failed == 1
        assert again == 1  # the journal skips what finished; the bad row is still bad
        assert fake.user_attributes(pool.id, "user7")["custom:tier"] == "t7"
        assert len(fake.update_log(pool.id, "user7")) == 1  # not applied twice
        assert (tmp_path / "migration.jsonl.journal").exists()


async def test_web_backend_example() -> None:
    example = load("web_backend")
    async with FakeCognito(user_update_rps=None) as fake:
        pool = fake.create_pool(alias_attributes=("email",))
        fake.create_user(pool.id, "alice", {"email": "alice@example.com"})
        fake.create_user(pool.id, "bob", {"email": "bob@example.com"})
        token = fake.issue_token(pool.id, "alice")
        expired = fake.issue_token(pool.id, "alice", expires_in=-1)
        app = example.make_app(region="us-east-1", endpoint_url=fake.endpoint_url)
        async with TestClient(TestServer(app)) as http:
            auth = {"Authorization": f"Bearer {token}"}
            ok = await http.patch(
                "/me", json={"nickname": "ally", "email": "new@example.com"}, headers=auth
            )
            assert ok.status == 200
            assert await ok.json() == {
                "updated": ["email", "nickname"],
                "verification_sent_to": ["n***@e***"],
            }
            me = await http.get("/me", headers=auth)
            assert (await me.json())["attributes"]["nickname"] == "ally"
            bad = await http.patch("/me", json={"tier": "gold"}, headers=auth)
            assert bad.status == 422
            assert "did you mean 'custom:tier'" in await bad.text()
            taken = await http.patch("/me", json={"email": "bob@example.com"}, headers=auth)
            assert taken.status == 409
            old = await http.patch(
                "/me", json={"nickname": "x"}, headers={"Authorization": f"Bearer {expired}"}
            )
            assert old.status == 401
            missing = await http.patch("/me", json={"nickname": "x"})
            assert missing.status == 401
            unknown = await http.patch("/me", json={"custom:nope": "x"}, headers=auth)
            assert unknown.status == 400
        assert fake.user_attributes(pool.id, "alice")["nickname"] == "ally"


@pytest.mark.moto
def test_quickstart_example_runs_against_embedded_moto() -> None:
    import subprocess

    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "alice set custom:tier and given_name" in result.stdout
    assert "refused before sending" in result.stdout
    assert "service error: UserNotFoundException (UserNotFoundError)" in result.stdout


async def test_observability_example(caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    example = load("observability")
    caplog.set_level(logging.INFO, logger="aiocognito")
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    stats = await example.watch(rows=150, quota=40.0, span_exporter=spans, metric_reader=reader)
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["CognitoIdentityProvider/AdminUpdateUserAttributes"] * 3 + [
        "aiocognito.bulk_update"
    ]
    assert stats.throttled > 0  # the fake's quota is half what the client was told
    cuts = [r for r in caplog.records if getattr(r, "event", None) == "rate_change"]
    assert cuts
    assert cuts[0].reason == "cut"  # type: ignore[attr-defined]


@pytest.mark.redis
def test_fleet_example(redis_server: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    example = load("fleet")
    reports = example.main(
        ["--workers", "2", "--updates", "80", "--quota", "40", "--redis-url", redis_server.url]
    )
    assert [r["ok"] for r in reports] == [40, 40]
    assert [r["mode"] for r in reports] == ["shared", "shared"]
    table = capsys.readouterr().out
    assert "all" in table
    assert "quota 40/s" in table


def test_fleet_example_on_one_host(capsys: pytest.CaptureFixture[str]) -> None:
    example = load("fleet")
    # On the default Limits(): they share on the host. The first to finish reports "shared"
    # (the other still holds its mark); the last may be "alone" by then.
    reports = example.main(["--workers", "2", "--updates", "80", "--quota", "40", "--on-host"])
    assert [r["ok"] for r in reports] == [40, 40]
    assert {r["mode"] for r in reports} <= {"shared", "alone"}
    assert "shared" in {r["mode"] for r in reports}
    assert "quota 40/s" in capsys.readouterr().out
