"""The deployment files, checked by the real tools: promtool (config, rules and the
rules' unit tests), Docker Compose (`config`), plus what no tool checks: that the
Dockerfile ships every package, that compose sets only settings slurp knows, and that
the Grafana dashboard is wired to the provisioned datasource.

promtool comes from Debian's `prometheus` package (scripts/prometheus installs it),
Docker Compose from Debian's `docker-compose` (scripts/compose-check installs it);
without them these tests skip locally and fail in CI.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurp.settings import Settings
from tests.prometheus_harness import (
    DASHBOARD_JSON,
    DEPLOY,
    GRAFANA_BUILTINS,
    PROMETHEUS_YML,
    REPO,
    RULES_YML,
    dashboard_queries,
    load_dashboard,
    load_rules,
    operands,
    panels,
    promtool,
    scrape_config_for,
    unavailable,
    variables_used,
)

COMPOSE = REPO / "compose.yaml"
PROVISIONING = DEPLOY / "grafana" / "provisioning"


def compose_check(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            [str(REPO / "scripts" / "compose-check"), *args],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable("docker compose (scripts/compose-check)", str(exc))
    if "installing" in done.stderr and done.returncode != 0:
        unavailable("docker compose (scripts/compose-check)", done.stderr[-2000:])
    return done


@pytest.fixture(scope="module")
def resolved_compose() -> dict[str, Any]:
    """compose.yaml as Docker Compose resolves it (anchors, merges, variables)."""
    done = compose_check("--print")
    assert done.returncode == 0, done.stderr
    resolved: dict[str, Any] = yaml.safe_load(done.stdout)
    return resolved


# -- Prometheus ---------------------------------------------------------------------


@pytest.mark.parametrize("config", ["prometheus.yml", "local.yml"])
def test_promtool_accepts_the_configs(config: str) -> None:
    done = promtool("check", "config", str(DEPLOY / "prometheus" / config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES_YML))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(load_rules())} rules found" in done.stdout + done.stderr


def test_promtool_accepts_the_generated_test_config(tmp_path: Path) -> None:
    config = scrape_config_for(
        {
            "slurp-worker": "127.0.0.1:1",
            "slurp-ticker": "127.0.0.1:2",
            "slurp-api": "127.0.0.1:3",
            "prometheus": "127.0.0.1:4",
        }
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_alert_rules_unit_tests_pass() -> None:
    """deploy/prometheus/alerts_test.yml: each alert fires on made-up series exactly
    when it should (failing, stale, queue, dead letters, nothing alive)."""
    done = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_unit_tested() -> None:
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    alerts = {rule["alert"] for rule in load_rules() if "alert" in rule}
    assert alerts == tested


def test_every_slurp_service_is_scraped_without_honor_labels(
    resolved_compose: dict[str, Any],
) -> None:
    """Plain scrapes, as a Kubernetes ServiceMonitor does them: slurp's series name
    their job in ``slurp_job``, so nothing depends on ``honor_labels``."""
    scrape = yaml.safe_load(PROMETHEUS_YML.read_text())["scrape_configs"]
    by_job = {job["job_name"]: job for job in scrape}
    ports = {"slurp-ticker": ("ticker", 9192), "slurp-worker": ("worker", 9191)}
    ports["slurp-api"] = ("api", 8000)
    for job_name, (service, port) in ports.items():
        job = by_job[job_name]
        assert "honor_labels" not in job, job_name
        (sd,) = job["dns_sd_configs"]
        assert (sd["names"], sd["type"], sd["port"]) == ([service], "A", port)
        assert service in resolved_compose["services"]
        assert str(port) in resolved_compose["services"][service].get("expose", [str(port)])
    local = yaml.safe_load((DEPLOY / "prometheus" / "local.yml").read_text())
    assert all("honor_labels" not in job for job in local["scrape_configs"])


def test_rules_and_dashboard_use_slurp_job_not_job() -> None:
    """``job`` is Prometheus' scrape job: only ``up`` is selected or grouped by it, and
    only the target-down alert names it."""
    exprs = [rule["expr"] for rule in load_rules()]
    exprs += [expr for _, expr in dashboard_queries(load_dashboard())]
    tests = (DEPLOY / "prometheus" / "alerts_test.yml").read_text()
    for expr in exprs:
        for matcher in re.finditer(r"(?<![\w.])job\s*(?:=~|!=|=)\s*\"([^\"]*)\"", expr):
            assert matcher.group(1).startswith("slurp-"), expr  # a scrape job's name
        grouped = re.search(r"\b(?:by|on|without|ignoring)\s*\((?:[\w\s,]*,)?\s*job\s*[,)]", expr)
        assert not grouped or re.search(r"\bup\{", expr), expr
        assert "exported_job" not in expr
    for rule in load_rules():
        if "alert" in rule and rule["alert"] != "SlurpTargetDown":
            assert "$labels.job" not in str(rule), rule["alert"]
    for series in re.findall(r"series: '(slurp_[^{]+\{[^}]*)\}'", tests):
        if not series.startswith(("slurp_queue", "slurp_dead", "slurp_ticker_last")):
            assert "slurp_job=" in series, series


def test_operands_of_alert_conditions() -> None:
    expr = "a:b >= 3 unless on (job) c{x=~'a|b>c'} > time() - 3600 # comment > 1"
    assert operands(expr) == ["a:b", "3", "c{x=~'a|b>c'}", "time() - 3600"]
    assert operands("(sum(up{a='1'}) or vector(0)) < 1") == ["(sum(up{a='1'}) or vector(0))", "1"]
    assert operands("max by (queue) (x) > bool 100") == ["max by (queue) (x)", "100"]
    assert operands("one_metric and ignoring (a) order_total") == ["one_metric", "order_total"]
    assert operands("rate(x[5m])") == ["rate(x[5m])"]


# -- Compose and the image ------------------------------------------------------------


def test_docker_compose_accepts_compose_yaml() -> None:
    done = compose_check()
    assert done.returncode == 0, done.stderr


def test_compose_stack_services(resolved_compose: dict[str, Any]) -> None:
    services = resolved_compose["services"]
    assert set(services) >= {
        "redis", "mongo", "ticker", "worker", "api", "gc", "prometheus", "grafana",
    }  # fmt: skip
    assert "--appendonly yes" in " ".join(services["redis"]["command"])  # AOF
    assert services["ticker"]["deploy"]["replicas"] == 2
    assert services["ticker"]["command"] == ["ticker", "--port", "9192"]
    assert services["worker"]["command"] == ["worker"]
    assert services["worker"]["environment"]["SLURP_METRICS_PORT"] == "9191"
    assert "ports" not in services["worker"]  # host ports would stop --scale worker=N
    assert services["api"]["command"] == ["api"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
    for name in ("ticker", "worker", "api", "gc"):
        assert services[name]["build"]["context"] == str(REPO)
        depends = services[name]["depends_on"]
        assert depends["mongo"]["condition"] == "service_healthy"
        if name != "gc":  # gc needs MongoDB only
            assert depends["redis"]["condition"] == "service_healthy"
    assert set(services["gc"]["depends_on"]) == {"mongo"}
    assert set(services["mongo"].get("depends_on", {})) == set()
    assert bind_mounts(services["prometheus"])[str(DEPLOY / "prometheus")] == "/etc/prometheus"
    grafana_mounts = bind_mounts(services["grafana"])
    assert grafana_mounts[str(PROVISIONING)] == "/etc/grafana/provisioning"
    assert grafana_mounts[str(DEPLOY / "grafana" / "dashboards")] == "/etc/grafana/dashboards"


def bind_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Host folder -> container path; compose v1 prints "src:dst[:mode]", v2 a mapping."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        if source.startswith("/"):
            mounts[source] = target
    return mounts


def secret_names(service: dict[str, Any]) -> set[str]:
    """The secrets a service mounts (compose v1 prints ``{source: x}``, v2 too)."""
    return {
        entry if isinstance(entry, str) else entry["source"] for entry in service.get("secrets", [])
    }


def test_compose_needs_no_variable_and_no_secret_file(tmp_path: Path) -> None:
    """``docker compose up -d mongo`` must not need the API's (or any other
    unrelated) secret: nothing is required through ``${VAR:?}``, and Compose resolves
    the file with an empty environment and no ./secrets folder."""
    text = COMPOSE.read_text()
    assert ":?" not in text and not re.search(r"\$\{[A-Z_]+\?", text)
    done = subprocess.run(
        [str(REPO / "scripts" / "compose-check")],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if "installing" in done.stderr and done.returncode != 0:
        unavailable("docker compose (scripts/compose-check)", done.stderr[-2000:])
    assert done.returncode == 0, done.stderr


#: The secrets each service needs, and nothing else.
SECRETS_BY_SERVICE = {
    "redis": {"redis_password"},
    "mongo": {"mongo_root_password", "mongo_slurp_password"},
    "ticker": {"slurp_redis_url", "slurp_mongo_url"},
    "worker": {"slurp_redis_url", "slurp_mongo_url"},
    "api": {"slurp_redis_url", "slurp_mongo_url", "api_jwt_secret", "api_users"},
    "gc": {"slurp_mongo_url"},
    "prometheus": set(),
    "grafana": {"grafana_admin_password"},
}
#: Environment variable names that would carry a secret in plain text.
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|_USERS$|_URL$", re.I)


def test_secrets_are_compose_secrets_read_through_file_variables(
    resolved_compose: dict[str, Any],
) -> None:
    services = resolved_compose["services"]
    defined = set(resolved_compose["secrets"])
    made = subprocess.run(
        [str(REPO / "scripts" / "compose-secrets"), "--list"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert set(made) == defined  # scripts/compose-secrets makes every one
    for name, wanted in SECRETS_BY_SERVICE.items():
        mounted = secret_names(services[name])
        assert mounted == wanted, name
        for key, value in (services[name].get("environment") or {}).items():
            if key.endswith("_FILE") or key.endswith("__FILE"):
                secret = str(value).removeprefix("/run/secrets/")
                assert str(value).startswith("/run/secrets/") and secret in mounted, key
            else:
                assert not SECRET_NAMES.search(key), f"{name}: {key} in plain environment"
    grafana = services["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana  # no admin/admin
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana_admin_password"


def test_redis_and_mongodb_require_authentication(resolved_compose: dict[str, Any]) -> None:
    services = resolved_compose["services"]
    redis_command = " ".join(services["redis"]["command"])
    assert "requirepass" in redis_command and "/run/secrets/redis_password" in redis_command
    assert "REDISCLI_AUTH" in " ".join(services["redis"]["healthcheck"]["test"])
    mongo = services["mongo"]
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD_FILE"] == (
        "/run/secrets/mongo_root_password"
    )
    entrypoint = (DEPLOY / "mongo" / "entrypoint.sh").read_text()
    assert "--replSet rs0" in entrypoint and "--keyFile" in entrypoint  # keyFile = auth on
    assert "rs.initiate" in (DEPLOY / "mongo" / "healthcheck.js").read_text()
    init = (DEPLOY / "mongo" / "init-slurp-user.js").read_text()
    assert "createUser" in init and "readWrite" in init
    mounts = bind_mounts(mongo)
    assert mounts[str(DEPLOY / "mongo" / "init-slurp-user.js")].startswith(
        "/docker-entrypoint-initdb.d/"
    )


def test_compose_secrets_makes_consistent_secrets_once(tmp_path: Path) -> None:
    """The URLs slurp reads embed the passwords the servers get; a second run keeps
    every file; the folder is private."""
    from slurp.redisconn import redis_client
    from storage.store import url_options

    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "compose-secrets"
    script.write_text((REPO / "scripts" / "compose-secrets").read_text())
    script.chmod(0o755)
    subprocess.run([str(script)], check=True, capture_output=True, timeout=60)
    folder = tmp_path / "secrets"
    assert folder.stat().st_mode & 0o777 == 0o700
    first = {path.name: path.read_text() for path in folder.iterdir()}
    subprocess.run([str(script)], check=True, capture_output=True, timeout=60)
    assert {path.name: path.read_text() for path in folder.iterdir()} == first
    secret = {name: text.strip() for name, text in first.items()}
    assert len(secret["api_jwt_secret"]) >= 32 and secret["api_users"] == "[]"
    assert len(set(secret.values())) == len(secret)  # no two alike
    redis_url = secret["slurp_redis_url"]
    assert redis_url == f"redis://:{secret['redis_password']}@redis:6379/0"
    kwargs = redis_client(redis_url).connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["password"]) == ("redis", secret["redis_password"])
    mongo_url = secret["slurp_mongo_url"]
    assert f"slurp:{secret['mongo_slurp_password']}@mongo:27017/slurp" in mongo_url
    assert url_options(mongo_url) == {"replicaset": "rs0", "authsource": "admin"}


def test_gc_runs_on_a_schedule(resolved_compose: dict[str, Any]) -> None:
    from slurp.cli import app

    gc = resolved_compose["services"]["gc"]
    loop = " ".join(gc["entrypoint"])
    assert "while" in loop and "slurp gc" in loop and "sleep" in loop
    assert gc["environment"]["GC_INTERVAL_S"] == "3600"
    commands = {
        command.name or getattr(command.callback, "__name__", "")
        for command in app.registered_commands
    }
    assert "gc" in commands


#: Images allowed, by licence: Valkey (BSD-3-Clause) or Redis 7.2 (the last BSD one).
OPEN_REDIS = re.compile(r"^(valkey/valkey:\d+\.\d+\.\d+|redis:7\.2\.\d+)(-[\w.]+)?$")


def test_images_are_pinned_by_version(resolved_compose: dict[str, Any]) -> None:
    for service in resolved_compose["services"].values():
        if "build" in service:
            continue  # slurp's own image
        image = service["image"]
        assert re.search(r":v?\d+\.\d+\.\d+(-[\w.]+)?(@sha256:[0-9a-f]{64})?$", image), image
    assert OPEN_REDIS.match(resolved_compose["services"]["redis"]["image"])


def test_compose_sets_only_settings_slurp_knows(resolved_compose: dict[str, Any]) -> None:
    """slurp refuses unknown SLURP_* variables: a typo here would stop the service."""
    from slurp.secretfiles import API_SECRETS, FILE_SUFFIX, SETTINGS_SECRETS

    known = {f"SLURP_{name.upper()}" for name in Settings.model_fields}
    known |= {name + FILE_SUFFIX for name in SETTINGS_SECRETS}
    try:
        from api.config import ApiConfig
    except ImportError:
        api_known = None
    else:
        api_known = {f"SLURP_API_{name.upper()}" for name in ApiConfig.model_fields}
        api_known |= {name + FILE_SUFFIX for name in API_SECRETS}
    for name in ("ticker", "worker", "api", "gc"):
        for key in resolved_compose["services"][name]["environment"]:
            if key.startswith("SLURP_API_"):
                assert name == "api", f"{name} must not get {key}"
                assert api_known is None or key in api_known, key
            elif key.startswith("SLURP_"):
                assert key in known, f"{name}: {key} is not a slurp setting"


def test_compose_commands_are_slurp_commands(resolved_compose: dict[str, Any]) -> None:
    from slurp.cli import app

    commands = {
        command.name or getattr(command.callback, "__name__", "")
        for command in app.registered_commands
    }
    for name in ("ticker", "worker", "api"):
        command = resolved_compose["services"][name]["command"][0]
        if command not in commands and command == "api":
            pytest.skip("`slurp api` is not registered yet (slurp/commands/api.py)")
        assert command in commands, f"compose runs `slurp {command}`, which does not exist"


# -- the image ------------------------------------------------------------------------

DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "requirements.lock"


def test_dockerfile_ships_every_package() -> None:
    """Each package of pyproject's packages.find `include` is COPYed into the image."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        path.name
        for path in REPO.iterdir()
        if (path / "__init__.py").is_file()
        and any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns)
    }
    dockerfile = DOCKERFILE.read_text()
    copied = {m.group(1) for m in re.finditer(r"^COPY\s+(\S+)\s+\1/?\s*$", dockerfile, re.M)}
    assert packages and packages - copied == set(), "packages missing from the Dockerfile"
    assert re.search(r'^ENTRYPOINT \["slurp"\]', dockerfile, re.M)


def test_dockerfile_pins_its_base_locks_its_dependencies_and_runs_as_a_number() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    base = next(line for line in lines if line.startswith("ARG PYTHON_IMAGE="))
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base)
    assert "FROM ${PYTHON_IMAGE}" in lines
    index = {line: number for number, line in enumerate(lines)}
    lock_copy = index["COPY requirements.lock ./"]
    install = next(n for n, line in enumerate(lines) if "--require-hashes" in line)
    first_source = min(n for n, line in enumerate(lines) if re.match(r"COPY (slurp|api) ", line))
    assert lock_copy < install < first_source  # dependencies: a layer of their own
    assert "-r requirements.lock" in lines[install] and "--no-deps" in lines[install]
    assert any("pip install --no-deps --no-build-isolation ." in line for line in lines)
    (user,) = [line for line in lines if line.startswith("USER ")]
    assert re.fullmatch(r"USER [1-9]\d*:[1-9]\d*", user)  # numeric, not root
    assert not any(re.match(r"COPY examples .*site-packages", line) for line in lines)


def locked() -> dict[str, str]:
    """requirements.lock: normalised name -> exact version."""
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    for match in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", LOCK.read_text(), re.M):
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_the_lock_satisfies_pyproject_and_holds_only_the_image() -> None:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = list(pyproject["project"]["dependencies"])
    for extra, requirements in pyproject["project"].get("optional-dependencies", {}).items():
        if extra != "embedded":  # SecantusDB (GPL-2.0-only) never goes into the image
            wanted += requirements
    wanted += pyproject["build-system"]["requires"]
    pins = locked()
    for text in wanted:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{text} is not in requirements.lock: run scripts/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])
    for absent in ("secantusdb", "pytest", "mypy", "ruff", "hypothesis", "selenium"):
        assert absent not in pins, absent
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    assert all("--hash=sha256:" in entry for entry in entries if "==" in entry)


def test_dockerignore_keeps_secrets_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {"secrets/", ".env", ".git/", ".venv/", "tests/"} <= ignored
    assert "secrets/" in (REPO / ".gitignore").read_text().split()


# -- Grafana ------------------------------------------------------------------------------


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "slurp.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    # The datasource is a dashboard variable (any Prometheus of the Grafana it is
    # imported into), never a hard-coded uid.
    dashboard = load_dashboard()
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    refs = [
        target["datasource"]
        for panel in panels(dashboard)
        for target in [panel, *panel.get("targets", [])]
        if "datasource" in target
    ]
    refs += [var["datasource"] for var in variables.values() if "datasource" in var]
    assert refs and all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in refs)
    assert f'"uid": "{source["uid"]}"' not in json.dumps(dashboard)


#: Grafana units by what a query returns.
PER_SECOND = {"ops", "reqps", "cps", "rps", "wps", "iops"}
PER_MINUTE = {"opm", "cpm", "rpm", "wpm"}


def expected_units(expr: str) -> set[str]:
    """The Grafana units that fit what ``expr`` returns."""
    if "histogram_quantile" in expr:
        return {"ms"} if "_milliseconds_bucket" in expr else {"s"}
    if re.match(r"^\s*60\s*\*", expr):
        return PER_MINUTE
    if "process_cpu_seconds_total" in expr:
        return {"percentunit"}  # CPU seconds per second
    if re.search(r"_seconds_sum\[.*\]\)\)\s*/", expr):
        return {"s"}  # a mean: sum / count
    if re.search(r"\b(?:rate|irate)\(", expr):
        return {"percentunit"} if "/" in expr else PER_SECOND
    if re.search(r"_bytes\b", expr):
        return {"bytes"}
    if re.search(r"timestamp_seconds|time\(\)|_seconds\b", expr):
        return {"s"}
    return {"short", "none"}  # counts


def test_dashboard_units_fit_every_query() -> None:
    """No panel mixes units (ms with counts, per-minute rates shown as plain
    numbers): each query's unit, with per-query overrides, fits what it returns."""
    for panel in panels(load_dashboard()):
        if panel["type"] == "row":
            continue
        field_config = panel["fieldConfig"]
        default = field_config["defaults"]["unit"]
        overrides = {
            override["matcher"]["options"]: prop["value"]
            for override in field_config.get("overrides", [])
            if override["matcher"]["id"] == "byFrameRefID"
            for prop in override["properties"]
            if prop["id"] == "unit"
        }
        for target in panel["targets"]:
            unit = overrides.get(target["refId"], default)
            fits = expected_units(target["expr"])
            assert unit in fits, f"{panel['title']} / {target['refId']}: {unit} not in {fits}"


def test_every_alert_links_its_runbook_section() -> None:
    """Each alert's runbook_url is ``docs/operations.md#<anchor>`` of a heading there."""
    docs = re.sub(
        r"^```.*?^```", "", (REPO / "docs" / "operations.md").read_text(), flags=re.M | re.S
    )
    anchors = {
        re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", docs, re.M)
    }
    for rule in load_rules():
        if "alert" in rule:
            url = rule["annotations"]["runbook_url"]
            path, _, anchor = url.partition("#")
            assert path == "docs/operations.md" and anchor in anchors, (rule["alert"], url)


def test_dashboard_is_well_formed() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "slurp" and DASHBOARD_JSON.name == "slurp.json"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    defined = {var["name"] for var in dashboard["templating"]["list"]}
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 20
    for where, expr in queries:
        unknown = variables_used(expr) - defined - set(GRAFANA_BUILTINS)
        assert not unknown, f"{where}: undefined variables {unknown}"
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel.get("targets") and panel.get("description"), panel["title"]
    recorded = {rule["record"] for rule in load_rules() if "record" in rule}
    used = {name for _, expr in queries for name in re.findall(r"slurp:[\w:]+", expr)}
    assert used <= recorded, f"dashboard uses unknown recording rules {used - recorded}"
    # The panels the issue asks for.
    titles = " | ".join(panel["title"] for panel in panels(dashboard)).lower()
    for topic in ("runs", "failed", "duration", "records", "data age", "queue depth"):
        assert topic in titles
    for topic in ("throughput", "ticker lag", "api request rate", "api latency"):
        assert topic in titles
