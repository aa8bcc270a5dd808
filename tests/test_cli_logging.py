"""``aiocognito update --log-level/--log-format``: records a log collector can read, no secrets."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from aiocognito import _bulkcli
from aiocognito._bulkcli import JsonLogFormatter, run_update
from aiocognito.cli import _parser
from aiocognito.testing import FakeCognito, PoolInfo
from tests.test_bulk_cli import served, settings, write_jsonl

__all__ = ["served"]  # the fixture, shared with the other CLI tests


def secret_rows(n: int) -> list[str]:
    return [
        json.dumps(
            {
                "username": f"user{i % 100}",
                "attributes": {"custom:tier": f"secret-tier-value-{i:04d}"},
                "client_metadata": {"metadata-secret": f"metadata-secret-value-{i}"},
            }
        )
        for i in range(n)
    ]


async def test_json_logs_and_progress_off_a_terminal(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, pool = served
    fake.quotas.set_rate("UserUpdate", 40)  # the run asks for 100/s: throttles, then a cut
    monkeypatch.setattr(_bulkcli, "PROGRESS_EVERY", 0.0)  # a record per tick, not per 5 s
    rows = secret_rows(120)
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    out, err = io.StringIO(), io.StringIO()  # neither is a terminal
    options = settings(path, fake, pool, rps=100, progress="auto")
    options.log_level, options.log_format = "debug", "json"
    code = await run_update(options, out, err=err)
    assert code == 0

    logged = [json.loads(line) for line in err.getvalue().splitlines()]  # every line is JSON
    attempts = [r for r in logged if r.get("event") == "attempt"]
    assert {r["level"] for r in attempts} == {"debug"}
    assert {r["operation"] for r in attempts} == {"AdminUpdateUserAttributes"}
    throttled = [r for r in attempts if r["code"] == "TooManyRequestsException"]
    assert throttled, "the fake's quota should have throttled some attempts"
    assert all(r["status"] == 400 for r in throttled)
    changes = [r for r in logged if r.get("event") == "rate_change"]
    assert changes
    assert changes[0]["level"] == "info"
    assert changes[0]["old_rate"] > changes[0]["new_rate"]
    assert all(isinstance(r["request_id"], str) for r in attempts if r["code"] is None)

    progress = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert len(progress) >= 2
    done = [p["rows_done"] for p in progress]
    assert done == sorted(done)
    final = progress[-1]
    assert final["event"] == "done"
    assert (final["rows_done"], final["ok"], final["failed"]) == (120, 120, 0)
    assert final["rows_total"] == 120
    assert final["eta_s"] == 0.0
    assert final["quota"] == 100
    assert final["quota_share"] == pytest.approx(final["rate"] / 100, abs=1e-3)
    assert "summary" in out.getvalue()  # the summary follows, as on a terminal

    everything = out.getvalue() + err.getvalue()
    for row in rows:
        record = json.loads(row)
        assert record["attributes"]["custom:tier"] not in everything
        assert record["client_metadata"]["metadata-secret"] not in everything
    assert "metadata-secret" not in everything


async def test_default_level_is_warning_in_text(
    served: tuple[FakeCognito, PoolInfo], tmp_path: Path
) -> None:
    fake, pool = served
    path = write_jsonl(tmp_path / "in.jsonl", secret_rows(20))
    out, err = io.StringIO(), io.StringIO()
    code = await run_update(settings(path, fake, pool), out, err=err)
    assert code == 0
    assert err.getvalue() == ""  # nothing went wrong: nothing at WARNING
    assert not out.getvalue().lstrip().startswith("{")  # plain progress, not JSON
    # The handler is removed again: an embedding program's logging is left as it was.
    assert not [
        h
        for h in logging.getLogger("aiocognito").handlers
        if not isinstance(h, logging.NullHandler)
    ]


def test_flags_parse_and_refuse() -> None:
    parser = _parser()
    args = parser.parse_args(
        ["update", "--input", "x.jsonl", "--log-level", "info", "--log-format", "json"]
    )
    assert (args.log_level, args.log_format) == ("info", "json")
    args = parser.parse_args(["update", "--input", "x.jsonl"])
    assert (args.log_level, args.log_format) == ("warning", "text")
    with pytest.raises(SystemExit):
        parser.parse_args(["update", "--input", "x.jsonl", "--log-level", "trace"])


def fail() -> None:
    raise ValueError("secret-in-exception-text")


def test_json_formatter_leaves_exception_text_out() -> None:
    record = logging.makeLogRecord(
        {"msg": "failed %s", "args": ("op",), "levelname": "WARNING", "name": "aiocognito"}
    )
    try:
        fail()
    except ValueError:
        record.exc_info = sys.exc_info()
    record.__dict__["operation"] = "GetUser"
    line = json.loads(JsonLogFormatter().format(record))
    assert line["message"] == "failed op"
    assert line["operation"] == "GetUser"
    assert line["error"] == "ValueError"
    assert "secret-in-exception-text" not in json.dumps(line)
