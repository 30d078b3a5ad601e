"""The ``slurp`` console script, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slurp import __version__

ROOT = Path(__file__).parents[1]


def slurp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slurp", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_version() -> None:
    result = slurp("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"slurp {__version__}"


@pytest.mark.parametrize("command", [[], ["validate"], ["version"], ["schema"]])
def test_help_everywhere(command: list[str]) -> None:
    result = slurp(*command, "--help")
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_validate_ok() -> None:
    result = slurp("validate", "examples/jobs.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK, 2 job(s)" in result.stdout


def test_validate_reports_problems_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "jobs:\n"
        "  - name: users\n"
        "    datasources: [{name: u, type: inline, records: []}]\n"
        "    collection: {type: upserted, name: users}\n"
    )
    result = slurp("validate", str(bad))
    assert result.returncode == 1
    assert "bad.yaml:4: job 'users': collection: upsert_key is required" in result.stderr
    assert "invalid (1 problem(s))" in result.stderr


def test_schema_check_passes() -> None:
    result = slurp("schema")
    assert result.returncode == 0, result.stderr
