"""Datasource configurations: a discriminated union on ``type``.

Each datasource of a job has a unique ``name`` (the key under which its items reach
the slurper in ``data_map``) and a ``type`` that selects the implementation.

Secrets are never written in a definition (``contracts.masking``): a URL with userinfo,
a credential header (``Authorization``, ``X-Api-Key``, ...) with a literal value and a
database URL with a literal password are refused, naming the field and the fix
(``${env.NAME}``, ``auth``, ``password_env``). What a job may reach on the host (files,
environment variables, hosts, slurpers) is the operator's policy,
``datasources.policy.JobPolicy``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.base import CollectionName
from contracts.masking import credential_problem, template_parts, userinfo_problem

__all__ = [
    "ODBC_REFUSED_KEYWORDS",
    "SQL_DIALECTS",
    "Auth",
    "Binding",
    "CollectionSource",
    "CsvSource",
    "Datasource",
    "InlineSource",
    "JsonSource",
    "JsonlSource",
    "OdbcSource",
    "Pagination",
    "RabbitMqSource",
    "RestSource",
    "SoapSource",
    "SqlSource",
    "WsSecurity",
    "XmlSource",
    "odbc_pairs",
]

_SOURCE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Names of environment variables holding secrets (never the secrets themselves).
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[str, Field(pattern=_ENV_NAME, description="Environment variable name.")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_userinfo(url: str | None) -> str | None:
    if url is not None and (problem := userinfo_problem(url)):
        raise ValueError(problem)
    return url


def _no_literal_credentials(headers: dict[str, str]) -> dict[str, str]:
    problems = [p for name, value in headers.items() if (p := credential_problem(name, value))]
    if problems:
        raise ValueError("; ".join(problems))
    return headers


class _Source(_Model):
    name: str = Field(
        description="Key of this source's items in the slurper's data_map.",
        pattern=_SOURCE_NAME_RE.pattern,
    )


class InlineSource(_Source):
    """Records written into the job file itself (demos and tests)."""

    type: Literal["inline"]
    records: list[dict[str, Any]] = Field(description="The items, as JSON objects.")


class Pagination(_Model):
    """How a REST source walks pages; ``max_pages`` bounds every style."""

    style: Literal["page", "offset", "cursor", "link"]
    param: str = Field(
        default="page",
        description="Query parameter carrying page/offset/cursor; not given: the style's name.",
    )
    size_param: str | None = Field(default=None, description="Query parameter for the page size.")
    size: int | None = Field(default=None, ge=1, description="Page size sent in size_param.")
    start: int | None = Field(
        default=None, description="First page number or offset (default: page 1, offset 0)."
    )
    cursor_path: str | None = Field(
        default=None, description="Dotted path of the next cursor in the response (cursor style)."
    )

    @model_validator(mode="after")
    def _style_needs(self) -> Self:
        if self.style == "offset" and (self.size is None or self.size_param is None):
            raise ValueError(
                "offset pagination needs 'size' and 'size_param' (e.g. size_param: limit)"
            )
        if self.style == "cursor" and self.cursor_path is None:
            raise ValueError("cursor pagination needs 'cursor_path' (e.g. meta.next_cursor)")
        if self.size is not None and self.size_param is None and self.style != "page":
            raise ValueError("'size' is sent in 'size_param': give size_param too")
        return self


class Auth(_Model):
    """Credentials; secrets are referenced by environment-variable name, never inline."""

    type: Literal["basic", "bearer", "oauth2_client_credentials", "oauth2_password"]
    username_env: EnvName | None = None
    password_env: EnvName | None = None
    token_env: EnvName | None = None
    client_id_env: EnvName | None = None
    client_secret_env: EnvName | None = None
    token_url: str | None = None
    scope: str | None = None
    client_auth: Literal["body", "basic"] = Field(
        default="body",
        description="How OAuth2 client credentials reach the token URL: form fields "
        "(client_secret_post) or an HTTP Basic header (client_secret_basic).",
    )

    _token_url_without_userinfo = field_validator("token_url")(_no_userinfo)

    @model_validator(mode="after")
    def _fields_for_type(self) -> Self:
        need = {
            "basic": ("username_env", "password_env"),
            "bearer": ("token_env",),
            "oauth2_client_credentials": ("token_url", "client_id_env", "client_secret_env"),
            "oauth2_password": ("token_url", "username_env", "password_env"),
        }[self.type]
        missing = [name for name in need if getattr(self, name) is None]
        if missing:
            raise ValueError(f"auth type '{self.type}' needs {', '.join(missing)}")
        if self.token_url is not None and not self.token_url.lower().startswith(
            ("http://", "https://")
        ):
            raise ValueError(f"token_url must be an http(s) URL, got {self.token_url!r}")
        return self


class _PathOrUrl(_Source):
    path: str | None = Field(
        default=None, description="Local file path (templates allowed; '.gz' is decompressed)."
    )
    url: str | None = Field(
        default=None, description="http(s) URL to stream from (templates allowed)."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP headers (url only; templates allowed)."
    )
    auth: Auth | None = Field(default=None, description="HTTP credentials (url only).")

    _url_without_userinfo = field_validator("url")(_no_userinfo)
    _headers_without_literal_credentials = field_validator("headers")(_no_literal_credentials)

    @model_validator(mode="after")
    def _exactly_one_location(self) -> Self:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' (a local file) or 'url'")
        if self.url is not None and not self.url.lower().startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if self.path is not None and (self.headers or self.auth is not None):
            raise ValueError("'headers' and 'auth' apply to a 'url' only, not to a local 'path'")
        return self


class RestSource(_Source):
    """A JSON HTTP API, fetched with httpx."""

    type: Literal["rest"]
    url: str
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = Field(default=None, description="JSON body for POST.")
    records_path: str | None = Field(
        default=None, description="Dotted path of the item list in the JSON answer, e.g. data.items"
    )
    pagination: Pagination | None = None
    auth: Auth | None = None
    timeout_s: float | None = Field(
        default=None, gt=0, description="Per request; null: the worker's SLURP_HTTP_TIMEOUT_S."
    )
    max_pages: int = Field(default=1000, ge=1, description="Stop after this many pages.")
    max_retries: int | None = Field(
        default=None, ge=0, description="Retries per request; null: SLURP_HTTP_RETRIES."
    )

    _url_without_userinfo = field_validator("url")(_no_userinfo)
    _headers_without_literal_credentials = field_validator("headers")(_no_literal_credentials)

    @model_validator(mode="after")
    def _valid_request(self) -> Self:
        if not self.url.lower().startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if self.body is not None and self.method != "POST":
            raise ValueError("a 'body' is sent with method POST only")
        return self


class CsvSource(_PathOrUrl):
    """A CSV file; each row becomes an object keyed by the header row."""

    type: Literal["csv"]
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quotechar: str = Field(default='"', min_length=1, max_length=1)
    encoding: str = Field(default="utf-8", description="utf-8 also skips a byte-order mark.")
    types: dict[str, Literal["str", "int", "float", "bool"]] = Field(
        default_factory=dict, description="Column conversions; other columns stay strings."
    )


class JsonSource(_PathOrUrl):
    """A JSON document holding a list of items (at ``records_path``)."""

    type: Literal["json"]
    records_path: str | None = None


class JsonlSource(_PathOrUrl):
    """JSON Lines: one item per line, streamed."""

    type: Literal["jsonl"]


class XmlSource(_PathOrUrl):
    """An XML document; every element matching ``record_path`` becomes an item."""

    type: Literal["xml"]
    record_path: str = Field(
        description="Element names from the root to the items, e.g. channel/item; matches "
        "the end of each element's path, a leading '/' anchors at the root, '*' is any name.",
        pattern=r"^/?(\*|[^/\s*]+)(/(\*|[^/\s*]+))*$",
    )
    list_elements: list[str] = Field(
        default_factory=list, description="Child element names always returned as lists."
    )
    method: Literal["GET", "POST"] = Field(default="GET", description="url only (SOAP: POST).")
    body: str | None = Field(
        default=None, description="Request body for POST, e.g. a SOAP envelope (templates allowed)."
    )

    @model_validator(mode="after")
    def _body_needs_post(self) -> Self:
        if (self.body is not None or self.method != "GET") and self.url is None:
            raise ValueError("'method' and 'body' apply to a 'url' only")
        if self.body is not None and self.method != "POST":
            raise ValueError("a 'body' is sent with method POST only")
        return self


#: ``sql`` URL schemes, each with the drivers it may name (``scheme+driver://``); the
#: first is the default. Other SQLAlchemy dialects are not loaded for jobs.
SQL_DIALECTS: dict[str, tuple[str, ...]] = {
    "postgresql": ("psycopg",),
    "postgres": ("psycopg",),
    "mysql": ("pymysql", "mysqldb"),
    "mariadb": ("pymysql", "mysqldb"),
    "oracle": ("oracledb",),
    "mssql": ("pymssql", "pyodbc"),
    "sqlite": ("pysqlite",),
}


def _url_password_problem(url: str, password_env: str | None, example: str) -> str | None:
    """Why a database/broker URL's password is refused: written literally, or given
    twice; ``${env.NAME}`` as the password is the one allowed form."""
    rest = url.partition("://")[2]
    userinfo = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[0]
    user, colon, password = userinfo.partition(":")
    if not colon:
        return None
    parts = list(template_parts(password))
    if len(parts) != 1 or parts[0][0] != "env" or "${" in user:
        return (
            "the url must not contain a password written literally: write it as a "
            f"reference to an environment variable, {example}, or name the variable in "
            "'password_env'"
        )
    if password_env is not None:
        return "give the password once: in the url (${env.NAME}) or password_env"
    return None


class _Query(_Source):
    query: str = Field(min_length=1, description="The query text (never templated).")
    password_env: EnvName | None = Field(
        default=None, description="Environment variable holding the database password."
    )
    batch_size: int = Field(default=1000, ge=1, le=100_000, description="Rows per fetch.")
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Server-side limit of the query (per fetch where the database "
        "counts fetches apart); null: none besides the job's timeout_s.",
    )
    decimals: Literal["number", "string"] = Field(
        default="number",
        description="DECIMAL/NUMERIC values: JSON numbers (int when integral, else "
        "float: 15-17 significant digits) or strings (exact).",
    )


class SqlSource(_Query):
    """A SQL query through SQLAlchemy Core, streamed with a server-side cursor."""

    type: Literal["sql"]
    url: str = Field(
        description="postgresql://, mysql://, mariadb://, oracle://, mssql:// (optionally "
        "scheme+driver://) user@host:port/db, or sqlite:///relative/path, "
        "sqlite:////absolute/path; a password only as scheme://user:${env.NAME}@host/db "
        "(or use password_env)."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Bind parameters in the driver's style: %(name)s for PostgreSQL, MySQL/"
        "MariaDB and SQL Server, :name for Oracle and SQLite; string values may use "
        "templates.",
    )

    @model_validator(mode="after")
    def _valid_url(self) -> Self:
        scheme, sep, _ = self.url.partition("://")
        dialect, plus, driver = scheme.lower().partition("+")
        drivers = SQL_DIALECTS.get(dialect)
        if not sep or drivers is None:
            known = ", ".join(f"{name}://" for name in SQL_DIALECTS)
            raise ValueError(f"url must start with one of {known}; got scheme {scheme!r}")
        if plus and driver not in drivers:
            raise ValueError(
                f"url scheme {scheme!r}: the driver must be one of {', '.join(drivers)} "
                f"(or none: {dialect}://)"
            )
        example = f"{dialect}://user:${{env.NAME}}@host/db"
        if problem := _url_password_problem(self.url, self.password_env, example):
            raise ValueError(problem)
        return self


#: ODBC connection-string keywords a job may not use: they name files to read or
#: write (``FILEDSN``, ``SAVEFILE``) instead of a server.
ODBC_REFUSED_KEYWORDS = frozenset({"filedsn", "savefile"})
_ODBC_PASSWORD_KEYWORDS = frozenset({"pwd", "password"})


def odbc_pairs(text: str) -> list[tuple[str, str]]:
    """``KEY=value`` pairs of an ODBC connection string (``{...}`` quoting, ``}}`` an
    escaped brace); ``ValueError`` when it is malformed."""
    pairs: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        end = text.find("=", position)
        if end < 0:
            if text[position:].strip(" ;"):
                raise ValueError(f"connection string part {text[position:]!r} has no '='")
            break
        key = text[position:end].strip().strip(";").strip()
        position = end + 1
        if text[position : position + 1] == "{":
            value, position = "", position + 1
            while True:
                close = text.find("}", position)
                if close < 0:
                    raise ValueError(f"connection string value of {key!r}: '{{' is not closed")
                value += text[position:close]
                if text[close + 1 : close + 2] == "}":
                    value, position = value + "}", close + 2
                    continue
                position = close + 1
                break
            semicolon = text.find(";", position)
            position = len(text) if semicolon < 0 else semicolon + 1
        else:
            semicolon = text.find(";", position)
            stop = len(text) if semicolon < 0 else semicolon
            value, position = text[position:stop].strip(), stop + 1
        if not key:
            raise ValueError("connection string has an empty keyword")
        pairs.append((key, value))
    return pairs


class OdbcSource(_Query):
    """A SQL query through ODBC (pyodbc with unixODBC), by DSN or connection string."""

    type: Literal["odbc"]
    dsn: str | None = Field(
        default=None, description="A data source name configured in odbc.ini by the operator."
    )
    connection_string: str | None = Field(
        default=None,
        description="DRIVER={registered driver name};SERVER=...;DATABASE=...;UID=...; a "
        "password only as PWD=${env.NAME} (or password_env).",
    )
    params: list[Any] = Field(
        default_factory=list,
        description="Positional bind parameters for the ? placeholders; string values may "
        "use templates.",
    )

    @model_validator(mode="after")
    def _valid_connection(self) -> Self:
        if (self.dsn is None) == (self.connection_string is None):
            raise ValueError("give exactly one of 'dsn' or 'connection_string'")
        if self.dsn is not None and not re.fullmatch(r"[A-Za-z0-9_. -]{1,128}", self.dsn):
            raise ValueError("dsn must be a data source name (letters, digits, '_ . -', blanks)")
        if self.connection_string is None:
            return self
        pairs = odbc_pairs(self.connection_string)
        for key, value in pairs:
            lowered = key.lower()
            if lowered in ODBC_REFUSED_KEYWORDS:
                raise ValueError(
                    f"connection string keyword {key!r} names a file; jobs connect to "
                    "servers only (use DRIVER= or DSN=)"
                )
            if lowered == "driver" and ("/" in value or "\\" in value):
                raise ValueError(
                    "DRIVER must name a driver registered in odbcinst.ini (e.g. "
                    "{PostgreSQL Unicode}), not a library path"
                )
            if lowered in _ODBC_PASSWORD_KEYWORDS:
                parts = list(template_parts(value))
                if len(parts) != 1 or parts[0][0] != "env":
                    raise ValueError(
                        f"connection string {key}= holds a password written literally: "
                        f"write {key}=${{env.NAME}} or name the variable in 'password_env'"
                    )
                if self.password_env is not None:
                    raise ValueError(f"give the password once: {key}=${{env.NAME}} or password_env")
            elif "${" in value:
                raise ValueError(
                    f"connection string {key}=: templates (${{...}}) are allowed in the "
                    "password only"
                )
        return self


class Binding(_Model):
    """Bind the queue to an exchange with a routing key."""

    exchange: str = Field(min_length=1, max_length=255)
    routing_key: str = Field(default="", max_length=255)


class RabbitMqSource(_Source):
    """Messages consumed from a RabbitMQ queue, acknowledged after the commit."""

    type: Literal["rabbitmq"]
    url: str = Field(
        description="amqp://user@host:5672/vhost or amqps://...; a password only as "
        "amqp://user:${env.NAME}@host/vhost (or use password_env)."
    )
    password_env: EnvName | None = Field(
        default=None, description="Environment variable holding the broker password."
    )
    queue: str = Field(min_length=1, max_length=255, description="The queue to consume.")
    declare: bool = Field(
        default=False,
        description="Declare the queue (durable) if it does not exist; otherwise a "
        "missing queue fails the run.",
    )
    bind: list[Binding] = Field(
        default_factory=list, description="Bindings of the queue to exchanges (made each run)."
    )
    max_messages: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="Stop after this many messages (all stay unacknowledged until the commit).",
    )
    max_wait_s: float = Field(
        default=5.0, ge=0, le=3600, description="Stop after this long without a message."
    )
    stop_when_empty: bool = Field(
        default=True, description="Stop as soon as the queue has no ready message."
    )
    prefetch: int = Field(
        default=1000,
        ge=1,
        le=30_000,
        description="Messages the broker may send ahead of the one being read.",
    )
    decode: Literal["json", "text", "bytes"] = Field(
        default="json",
        description="json: the body's JSON value; text: {body: string}; bytes: {body: base64}.",
    )
    encoding: str = Field(default="utf-8", description="Text encoding of text and json bodies.")
    with_metadata: bool = Field(
        default=False,
        description="Items are {body, message_id, routing_key, exchange, headers, "
        "timestamp, redelivered} instead of the body alone.",
    )
    dedupe: Literal["message_id", "content", "none"] = Field(
        default="message_id",
        description="How a message redelivered after its run committed is recognised and "
        "skipped: its message_id (a content hash when it has none), always a content "
        "hash, or not at all.",
    )

    @model_validator(mode="after")
    def _valid_url(self) -> Self:
        scheme = self.url.partition("://")[0].lower()
        if "://" not in self.url or scheme not in ("amqp", "amqps"):
            raise ValueError(f"url must start with amqp:// or amqps://, got {self.url[:10]!r}")
        example = f"{scheme}://user:${{env.NAME}}@host/vhost"
        if problem := _url_password_problem(self.url, self.password_env, example):
            raise ValueError(problem)
        return self


class WsSecurity(_Model):
    """A WS-Security UsernameToken in the SOAP header."""

    username_env: EnvName
    password_env: EnvName
    digest: bool = Field(
        default=False, description="PasswordDigest (with nonce and created) instead of text."
    )


class SoapSource(_Source):
    """A SOAP operation (zeep, from its WSDL), called page by page if paginated."""

    type: Literal["soap"]
    wsdl: str = Field(
        description="The WSDL: an http(s) URL or a local file below SLURP_FILE_ROOTS."
    )
    operation: str = Field(min_length=1, description="The operation to call.")
    service: str | None = Field(default=None, description="Service name (default: the first).")
    port: str | None = Field(default=None, description="Port name (default: the first).")
    endpoint: str | None = Field(
        default=None, description="http(s) address to call instead of the WSDL's."
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="The operation's arguments (nested objects for complex types); "
        "templates in strings, ${env.NAME} allowed.",
    )
    result_path: str | None = Field(
        default=None,
        description="Dotted path of the item list in the result; none: the result itself "
        "(a list, or one item).",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")
    auth: Auth | None = Field(default=None, description="HTTP credentials.")
    wsse: WsSecurity | None = Field(default=None, description="WS-Security UsernameToken.")
    pagination: Pagination | None = Field(
        default=None,
        description="page/offset: the argument 'param' is set per call (size in "
        "size_param); cursor: 'param' gets the value at cursor_path of the result.",
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Per request; null: SLURP_HTTP_TIMEOUT_S."
    )
    max_pages: int = Field(default=1000, ge=1, description="Stop after this many calls.")
    max_retries: int | None = Field(
        default=None, ge=0, description="Retries per request; null: SLURP_HTTP_RETRIES."
    )

    _endpoint_without_userinfo = field_validator("endpoint")(_no_userinfo)
    _headers_without_literal_credentials = field_validator("headers")(_no_literal_credentials)

    @model_validator(mode="after")
    def _valid(self) -> Self:
        if self.wsdl.lower().startswith(("http://", "https://")):
            if problem := userinfo_problem(self.wsdl):
                raise ValueError(problem)
        elif "://" in self.wsdl:
            raise ValueError("wsdl must be an http(s) URL or a local file path")
        if self.endpoint is not None and not self.endpoint.lower().startswith(
            ("http://", "https://")
        ):
            raise ValueError(f"endpoint must be an http(s) URL, got {self.endpoint!r}")
        if self.pagination is not None and self.pagination.style == "link":
            raise ValueError("SOAP pagination styles: page, offset, cursor (not link)")
        return self


class CollectionSource(_Source):
    """Another slurp collection (live data, or one version), so jobs can chain."""

    type: Literal["collection"]
    collection: CollectionName
    version: int | None = Field(default=None, ge=1)


Datasource = Annotated[
    InlineSource
    | RestSource
    | CsvSource
    | JsonSource
    | JsonlSource
    | XmlSource
    | SqlSource
    | OdbcSource
    | RabbitMqSource
    | SoapSource
    | CollectionSource,
    Field(discriminator="type"),
]
