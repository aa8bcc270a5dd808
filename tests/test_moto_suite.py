"""moto's own cognito-idp tests, run in moto's server mode against the fake, as a contract.

The tests come from the moto sdist on the package index, the release pinned in the test extra
(its version is in the first line of ``data/moto_cognitoidp_expected.txt``). They are cached
under the pytest cache, never in the repository. The fake serves them in a background thread,
and moto's suite runs in a child pytest with ``TEST_SERVER_MODE=true`` and
``TEST_SERVER_MODE_ENDPOINT`` pointing at the fake: moto then sends every boto3 call there and
resets state with ``POST /moto-api/reset`` before each test.

Only the tests listed in ``data/moto_cognitoidp_expected.txt`` run: they cover the attribute
operations and the setup calls the fake serves. Each must pass; one that starts failing fails
this test. moto's other tests exercise operations the fake does not serve (groups, MFA, SRP,
identity providers, ...) or moto's own leniencies (for instance, attributes without their
``custom:`` prefix), and are left out. When the index cannot be reached the test is skipped,
with the reason.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from aiocognito.testing import FakeCognito

EXPECTED = Path(__file__).parent / "data" / "moto_cognitoidp_expected.txt"
MODULE = "tests/test_cognitoidp/test_cognitoidp.py"
# The files the selected tests import: moto's test package, its conftest and the module.
MEMBERS = (
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/test_cognitoidp/__init__.py",
    MODULE,
)
DOWNLOAD_TIMEOUT = 120.0
SUITE_TIMEOUT = 180.0

# Like the moto integration tests, it needs moto; `make unit` leaves it out.
pytestmark = pytest.mark.moto


def _expected() -> tuple[str, list[str]]:
    lines = EXPECTED.read_text(encoding="utf-8").splitlines()
    header = lines[0]
    assert header.startswith("# moto "), "the list's first line names the moto release"
    tests = [line.strip() for line in lines[1:] if line.strip() and not line.startswith("#")]
    return header.removeprefix("# moto ").strip(), tests


def _fetch_suite(cache: Path, version: str) -> Path:
    """moto's cognito-idp tests for ``version``, downloaded once and unpacked under ``cache``."""
    suite = cache / f"moto-{version}"
    if (suite / MODULE).is_file():
        return suite
    downloads = cache / "sdist"
    downloads.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        # Fail fast when the index is unreachable: the test is skipped, never left hanging.
        "--retries",
        "1",
        "--timeout",
        "15",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--dest",
        str(downloads),
        f"moto=={version}",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"the package index did not deliver moto {version}'s sdist in time")
    archive = downloads / f"moto-{version}.tar.gz"
    if done.returncode != 0 or not archive.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot download moto {version}'s sdist from the package index: {last}")
    staging = cache / f"moto-{version}.partial"
    # Only the named files are written, each to a path we build, so nothing in the archive
    # can land outside the cache.
    with tarfile.open(archive) as tar:
        for member in MEMBERS:
            source = tar.extractfile(f"moto-{version}/{member}")
            assert source is not None, f"moto {version}'s sdist lacks {member}"
            target = staging / member
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())
    staging.rename(suite)
    return suite


def _outcomes(report: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        name = case.get("name", "")
        if kinds & {"failure", "error"}:
            outcomes[name] = "failed"
        elif "skipped" in kinds:
            outcomes[name] = "skipped"
        else:
            outcomes[name] = "passed"
    return outcomes


def test_moto_cognitoidp_suite_passes_against_the_fake(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    version, expected = _expected()
    installed = importlib.metadata.version("moto")
    assert installed == version, (
        f"moto {installed} is installed but the expected list was recorded for moto {version}: "
        "install the test extra's moto, or re-record the list for the new release"
    )
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    where = cache.mkdir("moto-cognitoidp") if cache is not None else tmp_path / "cache"
    where.mkdir(exist_ok=True)
    suite = _fetch_suite(where, version)
    (suite / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    report = tmp_path / "report.xml"
    fake = FakeCognito(user_update_rps=None, user_read_rps=None, per_user_write_rps=None)
    with fake.run_in_thread():
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            TEST_SERVER_MODE="true",
            TEST_SERVER_MODE_ENDPOINT=fake.endpoint_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
            AWS_EC2_METADATA_DISABLED="true",
        )
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *(f"{MODULE}::{name}" for name in expected),
        ]
        done = subprocess.run(
            command,
            cwd=suite,
            env=env,
            capture_output=True,
            text=True,
            timeout=SUITE_TIMEOUT,
            check=False,
        )
    assert report.is_file(), (
        f"moto's suite did not run:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    outcomes = _outcomes(report)
    broken = {name: outcomes.get(name, "not run") for name in expected}
    broken = {name: outcome for name, outcome in broken.items() if outcome != "passed"}
    assert not broken, f"moto tests that passed before now fail: {broken}\n{done.stdout[-5000:]}"
