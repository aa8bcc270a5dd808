"""The README's pytest example runs as written, so the documentation cannot drift."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_pytest_fixture_example_passes(tmp_path: Path) -> None:
    text = README.read_text()
    block = text.split("### A pytest fixture", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert "async def test_" in block
    (tmp_path / "test_from_readme.py").write_text(block)
    # The settings a user's project would have: asyncio tests, warnings as errors.
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
