"""Secrets from files (``*_FILE`` variables, ``slurp.secretfiles``): the settings and
the API read ``SLURP_REDIS_URL_FILE``, ``SLURP_MONGO_URL_FILE``,
``SLURP_API_JWT_SECRET_FILE`` and ``SLURP_API_USERS_FILE`` as compose.yaml sets them,
and report every problem naming the variable, never the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurp.errors import SettingsError
from slurp.secretfiles import MAX_SECRET_BYTES, read_secret_files
from slurp.settings import load_settings

REDIS_URL = "redis://:p4ss@redis:6379/0"


def secret(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_settings_read_urls_from_files(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "SLURP_REDIS_URL_FILE": secret(tmp_path, "redis", REDIS_URL + "\n"),
            "SLURP_MONGO_URL_FILE": secret(tmp_path, "mongo", "mongodb://u:p@mongo/slurp\r\n"),
            "SLURP_MONGO_DB": "slurp",
        }
    )
    assert settings.redis_url == REDIS_URL  # one trailing line break removed
    assert settings.mongo_url == "mongodb://u:p@mongo/slurp"


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"SLURP_REDIS_URL_FILE": "/nonexistent/redis"}, "SLURP_REDIS_URL_FILE: cannot read"),
        (
            {"SLURP_REDIS_URL_FILE": "{file}", "SLURP_REDIS_URL": REDIS_URL},
            "SLURP_REDIS_URL_FILE: SLURP_REDIS_URL is set too",
        ),
    ],
)
def test_settings_problems_name_the_variable_not_the_secret(
    tmp_path: Path, environ: dict[str, str], problem: str
) -> None:
    path = secret(tmp_path, "redis", REDIS_URL)
    environ = {key: value.replace("{file}", path) for key, value in environ.items()}
    with pytest.raises(SettingsError) as caught:
        load_settings({**environ, "SLURP_NO_SUCH_SETTING": "1"})
    message = str(caught.value)
    assert problem in message and "SLURP_NO_SUCH_SETTING" in message  # reported together
    assert "p4ss" not in message


def test_only_secret_settings_have_a_file_form(tmp_path: Path) -> None:
    """``SLURP_JOBS_FILE`` is a setting of its own (a job file), not ``SLURP_JOBS``
    from a file; ``_FILE`` of a non-secret setting is an unknown setting."""
    jobs = secret(tmp_path, "jobs.yaml", "jobs: []\n")
    assert load_settings({"SLURP_JOBS_FILE": jobs}).jobs_file == Path(jobs)
    with pytest.raises(SettingsError, match="SLURP_LOG_LEVEL_FILE: unknown setting"):
        load_settings({"SLURP_LOG_LEVEL_FILE": jobs})


def test_large_or_binary_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    _, problems = read_secret_files({"A_FILE": str(big), "B_FILE": str(binary)}, ["A", "B"])
    assert problems == [
        f"A_FILE: {big} is larger than {MAX_SECRET_BYTES} bytes",
        f"B_FILE: {binary} is not UTF-8 text",
    ]


def test_the_api_reads_its_secret_and_users_from_files(tmp_path: Path) -> None:
    api_config = pytest.importorskip("api.config")
    jwt = "j" * 40
    config = api_config.load_api_config(
        {
            "SLURP_API_JWT_SECRET_FILE": secret(tmp_path, "jwt", jwt + "\n"),
            "SLURP_API_USERS_FILE": secret(tmp_path, "users", "[]\n"),
            "SLURP_REDIS_URL_FILE": "/not/read/by/the/api",
        }
    )
    assert config.jwt_secret.get_secret_value() == jwt
    with pytest.raises(api_config.ApiConfigError) as caught:
        api_config.load_api_config({"SLURP_API_JWT_SECRET_FILE": str(tmp_path / "missing")})
    assert "SLURP_API_JWT_SECRET_FILE: cannot read" in str(caught.value)


def test_worker_processes_read_the_same_file_never_the_value(tmp_path: Path) -> None:
    """`slurp worker` hands its settings to the dramatiq processes as variables; a
    secret given as a file stays a file (no second variable, no plain value)."""
    from workers.launch import worker_env

    base = {"SLURP_REDIS_URL_FILE": secret(tmp_path, "redis", REDIS_URL), "PATH": "/bin"}
    settings = load_settings(base)
    env = worker_env(settings, base=base)
    assert (
        "SLURP_REDIS_URL" not in env and env["SLURP_REDIS_URL_FILE"] == base["SLURP_REDIS_URL_FILE"]
    )
    assert REDIS_URL not in env.values()
    assert load_settings({k: v for k, v in env.items() if k.startswith("SLURP_")}).redis_url == (
        REDIS_URL
    )
