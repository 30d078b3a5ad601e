"""``JobPolicy``: what a job may reach on the host, as the operator configured it.

Job authors (job files, ``slurp jobs apply``, ``PUT /api/jobs``) are trusted with data,
not with the host. One policy, built from ``Settings``, is used wherever a job is
accepted or run:

- ``check(job)`` lists every problem the definition alone shows (``slurp validate``,
  ``slurp jobs apply``, ``JobRegistry`` given a policy, ``PUT /api/jobs``);
  ``require(job)`` raises them (``run_slurper`` calls it before anything is fetched);
- run-time guards, after templates are rendered, are the real ones: ``resolve_file``
  (symlinks resolved) and ``check_opened`` (the file actually opened), ``check_env``
  (every variable read, through ``Redactor``), ``check_request`` (every HTTP request
  through ``datasources.egress``: each address a name resolves to, redirects and
  OAuth2 token URLs included).

=============== ====================================================================
files           ``csv``/``json``/``jsonl``/``xml`` paths, SOAP WSDLs (and the schemas
                they import) and SQLite databases resolve
                (symlinks followed) below one of ``file_roots`` (``SLURP_FILE_ROOTS``,
                default: the working directory); a ``..`` component is refused
environment     ``${env.NAME}``, the ``*_env`` fields and SQL URL passwords read only
                variables in ``env_allow`` (``SLURP_JOB_ENV_ALLOW``: names and
                ``PREFIX*``; default none); ``SLURP_*`` (any case) never
outbound HTTP   the host matches ``http_allow_hosts`` (``*``, a name, ``*.domain``, or
                networks holding every address it resolves to; default ``*``) and
                every address is public, or inside a listed network, or
                ``http_allow_private`` is set
slurpers        the module lies under a ``slurper_modules`` prefix
=============== ====================================================================

Messages name what was refused and the setting that would allow it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from contracts.datasources import (
    Auth,
    CsvSource,
    JsonlSource,
    JsonSource,
    OdbcSource,
    RabbitMqSource,
    RestSource,
    SoapSource,
    SqlSource,
    XmlSource,
    odbc_pairs,
)
from contracts.jobs import JobDefinition
from contracts.masking import env_references, template_parts
from datasources.errors import FetchError, NotAllowedError, SlurperNotAllowedError
from slurp.settings import LOOPBACK_NETWORKS, HostEntry, parse_env_pattern, parse_host_entry

if TYPE_CHECKING:
    from slurp.settings import Settings

__all__ = [
    "LOOPBACK_NETWORKS",
    "JobPolicy",
    "Problem",
    "is_allowed",
    "slurper_refusal",
    "sqlite_path",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Loc = tuple[str | int, ...]
_FileSource = CsvSource | JsonSource | JsonlSource | XmlSource


@dataclass(frozen=True)
class Problem:
    """One thing a job may not do: where (``loc``, a path into the definition), what,
    and the error it raises at run time."""

    loc: Loc
    message: str
    error: type[NotAllowedError] = NotAllowedError

    @property
    def field(self) -> str:
        return ".".join(str(part) for part in self.loc)

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def is_allowed(module: str, prefixes: Sequence[str]) -> bool:
    """Whether ``module`` is one of ``prefixes`` or lies below one (whole components)."""
    return any(module == p or module.startswith(p + ".") for p in prefixes if p)


def slurper_refusal(spec: str, allowed: Sequence[str]) -> str | None:
    """Why the slurper ``spec`` (``module:function``) may not be imported, or None."""
    module = spec.partition(":")[0]
    if is_allowed(module, allowed):
        return None
    shown = ", ".join(repr(p) for p in allowed) or "none"
    return (
        f"{spec!r} refused: module {module!r} is not under an allowed prefix ({shown}); "
        "add its package to SLURP_SLURPER_MODULES to allow it"
    )


def sqlite_path(url: str) -> str:
    """The file of a SQLite URL: ``sqlite:///x`` -> ``x``, ``sqlite:////x`` -> ``/x``."""
    return unquote(url.partition("://")[2][1:])


def _address_kind(address: Address) -> str:
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


@dataclass(frozen=True)
class JobPolicy:
    """The operator's rules for jobs (see the module docstring). Defaults are the safe
    ones: files under the working directory, no variables, public hosts only, slurpers
    from ``examples``."""

    file_roots: Sequence[str | Path] = (Path("."),)
    env_allow: Sequence[str] = ()
    http_allow_hosts: Sequence[str] = ("*",)
    http_allow_private: bool = False
    slurper_modules: Sequence[str] = ("examples",)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        roots = tuple(Path(root).expanduser().resolve() for root in self.file_roots)
        entries: list[HostEntry] = [parse_host_entry(e) for e in self.http_allow_hosts]
        set_ = object.__setattr__
        set_(self, "file_roots", roots)
        set_(self, "env_allow", tuple(parse_env_pattern(e) for e in self.env_allow))
        set_(self, "http_allow_hosts", tuple(self.http_allow_hosts))
        set_(self, "slurper_modules", tuple(self.slurper_modules))
        set_(self, "_names", tuple(e for e in entries if isinstance(e, str)))
        set_(self, "_networks", tuple(e for e in entries if not isinstance(e, str)))

    @classmethod
    def from_settings(cls, settings: Settings) -> JobPolicy:
        return cls(
            file_roots=tuple(settings.file_roots),
            env_allow=tuple(settings.job_env_allow),
            http_allow_hosts=tuple(settings.http_allow_hosts),
            http_allow_private=settings.http_allow_private,
            slurper_modules=tuple(settings.slurper_modules),
        )

    # -- validation -------------------------------------------------------------------

    def check(self, job: JobDefinition) -> list[Problem]:
        """Every problem of ``job`` known before it runs (templated parts are checked
        at run time, after rendering)."""
        problems = []
        if job.slurper is not None and (
            refusal := slurper_refusal(job.slurper, self.slurper_modules)
        ):
            problems.append(Problem(("slurper",), refusal, SlurperNotAllowedError))
        for index, source in enumerate(job.datasources):
            problems += self._source(("datasources", index), source)
        return problems

    def require(self, job: JobDefinition) -> None:
        """Raise the first problem's error (``NotAllowedError`` or
        ``SlurperNotAllowedError``) naming every problem, if there are any."""
        problems = self.check(job)
        if problems:
            raise problems[0].error("; ".join(str(p) for p in problems))

    def problem_lines(self, jobs: Iterable[JobDefinition], source: str) -> list[str]:
        """``source: job 'x': field: problem`` for every problem of ``jobs``."""
        return [f"{source}: job {job.name!r}: {p}" for job in jobs for p in self.check(job)]

    def _source(self, loc: Loc, source: Any) -> Iterator[Problem]:
        if isinstance(source, RestSource):
            yield from self._http(loc, source.url, source.params, source.headers, source.auth)
            yield from self._env_in_tree((*loc, "body"), source.body)
        elif isinstance(source, _FileSource):
            if source.path is not None:
                yield from self._no_env_here((*loc, "path"), source.path)
                if problem := self._path_problem(source.path):
                    yield Problem((*loc, "path"), problem)
            if source.url is not None:
                yield from self._http(loc, source.url, {}, source.headers, source.auth)
            if isinstance(source, XmlSource):
                yield from self._env_in_tree((*loc, "body"), source.body)
        elif isinstance(source, SqlSource):
            yield from self._sql(loc, source)
        elif isinstance(source, OdbcSource):
            yield from self._odbc(loc, source)
        elif isinstance(source, RabbitMqSource):
            for name in env_references(source.url):
                yield from self._env((*loc, "url"), name)
            if source.password_env is not None:
                yield from self._env((*loc, "password_env"), source.password_env)
        elif isinstance(source, SoapSource):
            yield from self._soap(loc, source)

    def _odbc(self, loc: Loc, source: OdbcSource) -> Iterator[Problem]:
        if source.password_env is not None:
            yield from self._env((*loc, "password_env"), source.password_env)
        for _key, value in odbc_pairs(source.connection_string or ""):
            for name in env_references(value):
                yield from self._env((*loc, "connection_string"), name)
        for index, value in enumerate(source.params):
            if isinstance(value, str):
                yield from self._no_env_here((*loc, "params", index), value)

    def _soap(self, loc: Loc, source: SoapSource) -> Iterator[Problem]:
        if source.wsdl.lower().startswith(("http://", "https://")):
            yield from self._no_env_here((*loc, "wsdl"), source.wsdl)
            if problem := self.url_problem(source.wsdl):
                yield Problem((*loc, "wsdl"), problem)
        else:
            yield from self._no_env_here((*loc, "wsdl"), source.wsdl)
            if problem := self._path_problem(source.wsdl):
                yield Problem((*loc, "wsdl"), problem)
        if source.endpoint is not None:
            yield from self._no_env_here((*loc, "endpoint"), source.endpoint)
            if problem := self.url_problem(source.endpoint):
                yield Problem((*loc, "endpoint"), problem)
        for name, value in source.headers.items():
            for variable in env_references(value):
                yield from self._env((*loc, "headers", name), variable)
        if source.auth is not None:
            yield from self._http(loc, "https://auth.invalid/", {}, {}, source.auth)
        if source.wsse is not None:
            for field_name in ("username_env", "password_env"):
                variable = getattr(source.wsse, field_name)
                yield from self._env((*loc, "wsse", field_name), variable)
        yield from self._env_in_tree((*loc, "args"), source.args)

    def _sql(self, loc: Loc, source: SqlSource) -> Iterator[Problem]:
        sqlite = source.url.lower().startswith("sqlite:")
        if sqlite and (problem := self._path_problem(sqlite_path(source.url))):
            yield Problem((*loc, "url"), problem)
        for name in env_references(source.url):
            yield from self._env((*loc, "url"), name)
        if source.password_env is not None:
            yield from self._env((*loc, "password_env"), source.password_env)
        for key, value in source.params.items():
            if isinstance(value, str):
                yield from self._no_env_here((*loc, "params", key), value)

    def _http(
        self, loc: Loc, url: str, params: dict[str, str], headers: dict[str, str], auth: Auth | None
    ) -> Iterator[Problem]:
        yield from self._no_env_here((*loc, "url"), url)
        if problem := self.url_problem(url):
            yield Problem((*loc, "url"), problem)
        for key, value in params.items():
            yield from self._no_env_here((*loc, "params", key), value)
        for name, value in headers.items():
            for variable in env_references(value):
                yield from self._env((*loc, "headers", name), variable)
        if auth is not None:
            for field_name in ("username_env", "password_env", "token_env", "client_id_env",
                               "client_secret_env"):  # fmt: skip
                variable = getattr(auth, field_name)
                if variable is not None:
                    yield from self._env((*loc, "auth", field_name), variable)
            if auth.token_url is not None and (problem := self.url_problem(auth.token_url)):
                yield Problem((*loc, "auth", "token_url"), problem)

    def _env_in_tree(self, loc: Loc, value: Any) -> Iterator[Problem]:
        if isinstance(value, str):
            for variable in env_references(value):
                yield from self._env(loc, variable)
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from self._env_in_tree((*loc, key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from self._env_in_tree((*loc, index), item)

    def _env(self, loc: Loc, name: str) -> Iterator[Problem]:
        if problem := self.env_problem(name):
            yield Problem(loc, problem)

    @staticmethod
    def _no_env_here(loc: Loc, text: str) -> Iterator[Problem]:
        for name in env_references(text):
            yield Problem(
                loc,
                f"${{env.{name}}}: secrets from the environment are allowed in headers and "
                "bodies only, never in paths, URLs or query parameters (proxies and logs "
                "record those); use a header or 'auth'",
            )

    # -- files ------------------------------------------------------------------------

    def _roots_text(self) -> str:
        return ", ".join(str(root) for root in self.file_roots) or "none"

    def _outside(self, raw: str, resolved: Path | None = None) -> str:
        where = f" resolves to {resolved}, which is" if resolved is not None else " is"
        return (
            f"{raw!r}{where} outside the folders jobs may read ({self._roots_text()}): add "
            "its folder to SLURP_FILE_ROOTS to allow it"
        )

    def _under_a_root(self, path: Path) -> bool:
        return any(path.is_relative_to(root) for root in self.file_roots)

    @staticmethod
    def _dotdot(text: str, raw: str) -> str | None:
        if ".." not in text.replace("\\", "/").split("/"):
            return None
        return (
            f"{raw!r}: '..' is not allowed in paths; name the file below one of the folders "
            "in SLURP_FILE_ROOTS"
        )

    def _path_problem(self, raw: str) -> str | None:
        """What validation can tell about a (maybe templated) path: a ``..`` component,
        or an absolute path that cannot lie below a root (compared as written: symlinks
        are resolved at run time)."""
        literal = "".join(
            text if kind in ("literal", "escaped") else "\x00" for kind, text in template_parts(raw)
        )
        if problem := self._dotdot(literal, raw):
            return problem
        prefix = literal.split("\x00", 1)[0]
        if not prefix.startswith("/"):
            return None  # relative to the worker's directory, or templated: run time
        if "\x00" not in literal:
            inside = self._under_a_root(Path(os.path.normpath(prefix)))
            return None if inside else self._outside(raw)
        head = Path(os.path.normpath(prefix))
        if any(head.is_relative_to(r) or str(r).startswith(prefix) for r in self.file_roots):
            return None  # the rendered path may lie below a root: run time
        return self._outside(raw)

    def resolve_file(self, raw: str, where: str) -> Path:
        """The real path of ``raw`` (relative to the working directory, symlinks
        resolved), if it lies below a root; ``NotAllowedError`` otherwise."""
        if problem := self._dotdot(raw, raw):
            raise NotAllowedError(f"{where}: {problem}")
        try:
            resolved = Path(os.path.abspath(raw)).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop
            raise FetchError(f"{where}: cannot resolve {raw!r}: {exc}", retryable=False) from None
        if not self._under_a_root(resolved):
            raise NotAllowedError(f"{where}: {self._outside(raw, resolved)}")
        return resolved

    def check_opened(self, fd: int, raw: str, where: str) -> None:
        """The file open as ``fd`` must lie below a root: a symlink swapped in between
        ``resolve_file`` and the open is caught here (where ``/proc`` tells)."""
        try:
            real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return  # no /proc: resolve_file's check stands
        if not self._under_a_root(real):
            raise NotAllowedError(f"{where}: {self._outside(raw, real)}")

    # -- environment ------------------------------------------------------------------

    def env_problem(self, name: str) -> str | None:
        """Why a job may not read the environment variable ``name``, or None."""
        if name.upper().startswith("SLURP_"):
            return (
                f"environment variable {name}: SLURP_* variables are slurp's own settings "
                "(database and broker URLs, ...); a job can never read them"
            )
        for pattern in self.env_allow:
            if name == pattern or (pattern.endswith("*") and name.startswith(pattern[:-1])):
                return None
        prefix = name.split("_", 1)[0]
        allowed = ", ".join(self.env_allow) or "none"
        return (
            f"environment variable {name} is not allowed for jobs (allowed: {allowed}): add "
            f"{name} (or a prefix such as {prefix}_*) to SLURP_JOB_ENV_ALLOW"
        )

    def check_env(self, name: str, what: str = "secret") -> None:
        """Raise ``NotAllowedError`` unless a job may read ``name`` (the ``what``)."""
        if problem := self.env_problem(name):
            raise NotAllowedError(f"{problem} (the {what})")

    # -- outbound HTTP ----------------------------------------------------------------

    def _name_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for name in self._names:
            if name == "*" or name == host or (name.startswith("*.") and host.endswith(name[1:])):
                return True
        return False

    def _address_allowed(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._networks):
            return True
        if address.is_multicast:
            return False
        return self.http_allow_private or address.is_global

    def request_problem(self, host: str, addresses: Sequence[str]) -> str | None:
        """Why a request to ``host``, which resolves to ``addresses``, is refused."""
        parsed = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
        in_networks = bool(parsed) and all(
            any(a in network for network in self._networks) for a in parsed
        )
        if not self._name_allowed(host) and not in_networks:
            entries = ", ".join(self.http_allow_hosts) or "none"
            return (
                f"host {host!r} is not allowed for jobs (SLURP_HTTP_ALLOW_HOSTS: {entries}); "
                "add it, a '*.domain' or its network to SLURP_HTTP_ALLOW_HOSTS"
            )
        for address in parsed:
            if not self._address_allowed(address):
                shown = "" if str(address) == host else f" resolves to {address}, which"
                return (
                    f"host {host!r}{shown} is a {_address_kind(address)} address: jobs reach "
                    "public addresses only; set SLURP_HTTP_ALLOW_PRIVATE=true or add the "
                    "address or its network to SLURP_HTTP_ALLOW_HOSTS"
                )
        return None

    def check_request(self, host: str, addresses: Sequence[str]) -> None:
        """Raise ``NotAllowedError`` unless a job may send a request to ``host`` at
        ``addresses`` (every address it resolved to)."""
        if problem := self.request_problem(host, addresses):
            raise NotAllowedError(problem)

    def url_problem(self, url: str) -> str | None:
        """What validation can tell about an http(s) URL: a host not allowed, or a
        literal address (or ``localhost``) refused. Names are resolved at run time."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return None  # the request fails with the URL's own error
        if not host or "$" in host or "{" in host:
            return None  # templated: checked at run time
        try:
            ipaddress.ip_address(host)
            return self.request_problem(host, [host])
        except ValueError:
            pass
        if host == "localhost" or host.endswith(".localhost"):
            return self.request_problem(host, ["127.0.0.1"])
        if self._name_allowed(host) or self._networks:
            return None  # the name is allowed, or its addresses may be: run time
        return self.request_problem(host, [])
