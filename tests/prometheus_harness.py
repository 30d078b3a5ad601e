"""A real Prometheus server for tests, and the queries of the shipped dashboard and rules.

The server is Debian's ``prometheus`` binary, installed and started by
``scripts/prometheus`` (a private instance on a free 127.0.0.1 port with its own data
folder). Its configuration is derived from the compose stack's
``deploy/prometheus/prometheus.yml``: the same scrape jobs, labels and rule file, with
static 127.0.0.1 targets instead of Docker DNS and 1 s intervals.

When Prometheus cannot be had, tests skip locally but fail when ``CI`` is set.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "prometheus"
DEPLOY = REPO / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
RULES_YML = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD_JSON = DEPLOY / "grafana" / "dashboards" / "slurp.json"

#: Values of the Grafana variables in dashboard queries, for instant queries here.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}


def unavailable(what: str, detail: str) -> None:
    """Skip the test locally; fail it in CI, where every tool must be installable."""
    message = f"{what} is not available: {detail}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@cache
def _install() -> tuple[bool, str]:
    try:
        done = subprocess.run(
            [str(SCRIPT), "install"], capture_output=True, text=True, timeout=600, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if done.returncode != 0:
        return False, done.stderr.strip()[-2000:]
    return True, done.stdout.strip()


def require_prometheus() -> str:
    """Install Prometheus through ``scripts/prometheus`` if needed; its version line."""
    ok, detail = _install()
    if not ok:
        unavailable("Prometheus (scripts/prometheus install)", detail)
    return detail


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_prometheus()
    return subprocess.run(
        [str(SCRIPT), "promtool", *args], capture_output=True, text=True, timeout=120, check=False
    )


# -- configuration ------------------------------------------------------------------


def scrape_config_for(
    targets: Mapping[str, str], rules: Path = RULES_YML, interval: str = "1s"
) -> dict[str, Any]:
    """The compose Prometheus config with ``targets`` (scrape job -> host:port) as
    static targets; scrape jobs not in ``targets`` are left out. Every job in
    ``targets`` must exist in the compose config."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(rules)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    missing = set(targets) - set(jobs)
    assert not missing, f"scrape jobs {missing} are not in {PROMETHEUS_YML}"
    config["scrape_configs"] = []
    for name, target in targets.items():
        job = {k: v for k, v in jobs[name].items() if not k.endswith("_sd_configs")}
        job["static_configs"] = [{"targets": [target]}]
        config["scrape_configs"].append(job)
    return config


class PrometheusServer:
    """A private Prometheus started by ``scripts/prometheus start`` in ``folder``."""

    def __init__(self, folder: Path, config: dict[str, Any], port: int) -> None:
        self.folder = folder
        self.port = port
        self.config_path = folder / "prometheus.yml"
        folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.env = {**os.environ, "SLURP_PROM_DIR": str(folder), "SLURP_PROM_PORT": str(port)}
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def start(self) -> PrometheusServer:
        done = self._script("start", str(self.config_path))
        if done.returncode != 0:
            raise AssertionError(f"scripts/prometheus start failed:\n{done.stderr}")
        assert done.stdout.strip() == self.url, done.stdout
        return self

    def stop(self) -> None:
        self.http.close()
        self._script("stop")

    def log(self) -> str:
        path = self.folder / "prometheus.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def _script(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def api(self, path: str, **params: str) -> Any:
        response = self.http.get(f"/api/v1/{path}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> dict[str, Any]:
        """``/api/v1/query``: ``{"resultType": ..., "result": ...}``."""
        data: dict[str, Any] = self.api("query", query=expr)
        return data

    def targets_health(self) -> dict[str, str]:
        """Scrape job -> health of its (single) active target."""
        data = self.api("targets", state="active")
        return {t["labels"]["job"]: t["health"] for t in data["activeTargets"]}

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]


def has_data(data: Mapping[str, Any]) -> bool:
    """A query answer with at least one value that is a number (not NaN)."""
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return not math.isnan(float(result[1]))
    if kind == "vector":
        return any(not math.isnan(float(sample["value"][1])) for sample in result)
    if kind == "matrix":
        return any(not math.isnan(float(v)) for series in result for _, v in series["values"])
    return False


# -- the shipped queries --------------------------------------------------------------


def load_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_YML.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD_JSON.read_text())
    return dashboard


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(panel title / refId, expr)`` of every Prometheus target of every panel."""
    return [
        (f"{panel['title']} / {target.get('refId', '?')}", target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def variables_used(expr: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _VARIABLE.finditer(expr)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables (``$job``, ``${job}``, ``[[job]]``, ``$__rate_interval``)."""

    def replace(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


# -- PromQL: the operands of an alert condition ----------------------------------------

_COMPARISON = ("==", "!=", ">=", "<=", ">", "<")
_SET_OPERATORS = ("and", "or", "unless")
_MODIFIER = re.compile(r"^\s*(?:bool\b|(?:on|ignoring|group_left|group_right)\b\s*(\([^)]*\))?)")


def _strip_comments(expr: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in expr.splitlines())


def operands(expr: str) -> list[str]:
    """The operands of ``expr``'s top-level comparison and set operators
    (``a > 3 unless on (job) b`` -> ``["a", "3", "b"]``), matching modifiers dropped.
    An expression without such an operator is its own single operand."""
    text = _strip_comments(expr)
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(text):
        char = text[i]
        if char in "\"'`":
            end = text.index(char, i + 1)
            while text[end - 1] == "\\" and char != "`":
                end = text.index(char, end + 1)
            i = end + 1
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            operator = next((op for op in _COMPARISON if text.startswith(op, i)), None)
            if operator is None:
                word = re.match(r"[A-Za-z_]\w*", text[i:])
                boundary = i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_:")
                if word and boundary and word.group(0) in _SET_OPERATORS:
                    operator = word.group(0)
                elif word and boundary:
                    i += len(word.group(0))  # a name: never split inside it
                    continue
            if operator is not None:
                parts.append(text[start:i])
                i += len(operator)
                start = i
                continue
        i += 1
    parts.append(text[start:])
    cleaned = []
    for part in parts:
        while True:
            match = _MODIFIER.match(part)
            if not match or not match.group(0).strip():
                break
            part = part[match.end() :]
        cleaned.append(" ".join(part.split()))
    return [part for part in cleaned if part]


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
