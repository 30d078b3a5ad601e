"""Datasource configurations: a discriminated union on ``type``.

Each datasource of a job has a unique ``name`` (the key under which its items reach
the slurper in ``data_map``) and a ``type`` that selects the implementation.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.base import CollectionName

__all__ = [
    "Auth",
    "CollectionSource",
    "CsvSource",
    "Datasource",
    "InlineSource",
    "JsonSource",
    "JsonlSource",
    "Pagination",
    "RestSource",
    "SqlSource",
    "XmlSource",
]

_SOURCE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Names of environment variables holding secrets (never the secrets themselves).
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[str, Field(pattern=_ENV_NAME, description="Environment variable name.")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class SqlSource(_Source):
    """A SQL query (PostgreSQL or SQLite), read through a server-side cursor."""

    type: Literal["sql"]
    url: str = Field(
        description="postgresql://user@host:port/db or sqlite:///relative/path or "
        "sqlite:////absolute/path; no password in it (use password_env)."
    )
    query: str = Field(min_length=1)
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Bind parameters: %(name)s in PostgreSQL, :name in SQLite; string values "
        "may use templates.",
    )
    password_env: EnvName | None = Field(
        default=None, description="Environment variable holding the database password."
    )
    batch_size: int = Field(default=1000, ge=1, le=100_000, description="Rows per fetch.")

    @model_validator(mode="after")
    def _valid_url(self) -> Self:
        scheme, sep, rest = self.url.partition("://")
        if not sep or scheme.lower() not in ("postgresql", "postgres", "sqlite"):
            raise ValueError(
                f"url must start with postgresql:// or sqlite:///, got scheme {scheme!r}"
            )
        userinfo = rest.split("/", 1)[0].rpartition("@")[0]
        if ":" in userinfo:
            raise ValueError(
                "the url must not contain a password: put it in an environment variable and "
                "name that variable in 'password_env'"
            )
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
    | CollectionSource,
    Field(discriminator="type"),
]
