"""What ``pip install slurp`` installs: the top-level packages the layout forces (and
never ``examples``, ``tests`` or ``bench``), the heavy parts as extras, and the
development tools as a dependency group with bounds (docs/operations.md,
"Installing slurp")."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from setuptools import find_packages  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parents[1]
#: The documented top-level names of the wheel.
TOP_LEVEL = {"slurp", "contracts", "storage", "datasources", "workers", "ticker", "api"}


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_the_wheel_installs_only_the_documented_top_level_packages() -> None:
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(where=str(REPO), include=include)
    assert {name.split(".")[0] for name in packages} == TOP_LEVEL
    assert "examples" not in str(pyproject()["tool"]["setuptools"].get("package-data", {}))
    # every sub-package of each layer is included (none lost to a pattern)
    every = find_packages(where=str(REPO), include=[f"{name}*" for name in TOP_LEVEL])
    assert set(packages) == {name for name in every if name.split(".")[0] in TOP_LEVEL}
    operations = (REPO / "docs" / "operations.md").read_text()
    assert all(f"`{name}`" in operations for name in TOP_LEVEL | {"examples"})


def test_the_api_is_an_extra_and_dev_tools_a_bounded_group() -> None:
    project = pyproject()["project"]
    core = {Requirement(text).name.lower() for text in project["dependencies"]}
    api = {Requirement(text).name.lower() for text in project["optional-dependencies"]["api"]}
    assert {"fastapi", "uvicorn", "pyjwt", "jinja2"} <= api
    assert not core & api
    assert "dev" not in project["optional-dependencies"]
    dev = pyproject()["dependency-groups"]["dev"]
    assert {Requirement(text).name.lower() for text in dev} >= {"pytest", "ruff", "mypy"}
    for text in dev:
        operators = {spec.operator for spec in Requirement(text).specifier}
        assert "<" in operators or "==" in operators, f"{text} has no upper bound"


def test_no_code_outside_the_api_imports_the_api_extras() -> None:
    """Workers, tickers and storage run without the ``api`` extra."""
    for layer in TOP_LEVEL - {"api", "slurp"}:
        for path in (REPO / layer).rglob("*.py"):
            text = path.read_text()
            for module in ("fastapi", "starlette", "uvicorn", "jwt", "jinja2"):
                assert f"import {module}" not in text and f"from {module}" not in text, path
