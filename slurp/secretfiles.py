"""Secrets read from files: ``SLURP_REDIS_URL_FILE=/run/secrets/slurp_redis_url``.

The convention of Docker's official images, for Compose and Kubernetes secrets: a
secret is mounted as a file and the variable ``<NAME>_FILE`` names the file, so the
secret itself never sits in the environment (``docker inspect``, ``/proc/<pid>/
environ``, crash reports, child processes). Only the variables that carry secrets
have a ``_FILE`` form:

==============================  ======================================================
``SLURP_REDIS_URL_FILE``        ``SLURP_REDIS_URL`` (a URL with the Redis password)
``SLURP_MONGO_URL_FILE``        ``SLURP_MONGO_URL`` (a URL with the MongoDB password)
``SLURP_API_JWT_SECRET_FILE``   ``SLURP_API_JWT_SECRET``
``SLURP_API_USERS_FILE``        ``SLURP_API_USERS`` (the JSON list of users)
==============================  ======================================================

The file's text is the value, one trailing line break removed (``echo secret >
file``). Setting both ``NAME`` and ``NAME_FILE`` is an error, as is a missing or
unreadable file, or one larger than ``MAX_SECRET_BYTES``; the loaders
(``slurp.settings.load_settings``, ``api.config.load_api_config``) report these with
their other problems, naming the variable and never the secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = [
    "API_SECRETS",
    "FILE_SUFFIX",
    "MAX_SECRET_BYTES",
    "SETTINGS_SECRETS",
    "read_secret_files",
]

#: ``NAME`` + this names the file holding ``NAME``'s value.
FILE_SUFFIX = "_FILE"
#: Secret settings of ``slurp.settings`` that may come from a file.
SETTINGS_SECRETS = ("SLURP_REDIS_URL", "SLURP_MONGO_URL")
#: Secret settings of ``api.config`` that may come from a file.
API_SECRETS = ("SLURP_API_JWT_SECRET", "SLURP_API_USERS")
#: Largest secret file read (a users list with a few hundred scrypt hashes fits).
MAX_SECRET_BYTES = 256 * 1024


def read_secret_files(
    environ: Mapping[str, str], names: Iterable[str]
) -> tuple[dict[str, str], list[str]]:
    """``environ`` with each ``<NAME>_FILE`` of ``names`` replaced by ``NAME`` = the
    file's text; and the problems found (one line each, ``NAME_FILE: ...``)."""
    env = dict(environ)
    problems: list[str] = []
    for name in names:
        variable = name + FILE_SUFFIX
        path = env.pop(variable, None)
        if path is None:
            continue
        if name in env:
            problems.append(f"{variable}: {name} is set too; set only one of them")
            continue
        try:
            with Path(path).open("rb") as file:
                data = file.read(MAX_SECRET_BYTES + 1)
        except OSError as exc:
            problems.append(f"{variable}: cannot read {path}: {exc.strerror or exc}")
            continue
        if len(data) > MAX_SECRET_BYTES:
            problems.append(f"{variable}: {path} is larger than {MAX_SECRET_BYTES} bytes")
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{variable}: {path} is not UTF-8 text")
            continue
        env[name] = text.removesuffix("\n").removesuffix("\r")
    return env, problems
