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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Source(_Model):
    name: str = Field(
        description="Key of this source's items in the slurper's data_map.",
        pattern=_SOURCE_NAME_RE.pattern,
    )


class _PathOrUrl(_Source):
    path: str | None = Field(default=None, description="Local file path.")
    url: str | None = Field(default=None, description="http(s) URL to stream from.")

    @model_validator(mode="after")
    def _exactly_one_location(self) -> Self:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' (a local file) or 'url'")
        return self


class InlineSource(_Source):
    """Records written into the job file itself (demos and tests)."""

    type: Literal["inline"]
    records: list[dict[str, Any]] = Field(description="The items, as JSON objects.")


class Pagination(_Model):
    """How a REST source walks pages; ``max_pages`` bounds every style."""

    style: Literal["page", "offset", "cursor", "link"]
    param: str = Field(default="page", description="Query parameter carrying page/offset/cursor.")
    size_param: str | None = Field(default=None, description="Query parameter for the page size.")
    size: int | None = Field(default=None, ge=1, description="Page size sent in size_param.")
    start: int = Field(default=1, description="First page number or offset.")
    cursor_path: str | None = Field(
        default=None, description="Dotted path of the next cursor in the response (cursor style)."
    )


class Auth(_Model):
    """Credentials; secrets are referenced by environment-variable name, never inline."""

    type: Literal["basic", "bearer", "oauth2_client_credentials", "oauth2_password"]
    username_env: str | None = None
    password_env: str | None = None
    token_env: str | None = None
    client_id_env: str | None = None
    client_secret_env: str | None = None
    token_url: str | None = None
    scope: str | None = None


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
    timeout_s: float = Field(default=30.0, gt=0)
    max_pages: int = Field(default=1000, ge=1)
    max_retries: int = Field(default=5, ge=0)


class CsvSource(_PathOrUrl):
    """A CSV file; each row becomes an object keyed by the header row."""

    type: Literal["csv"]
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"
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
    record_path: str = Field(description="ElementPath of the item elements, e.g. channel/item")


class SqlSource(_Source):
    """A SQL query (PostgreSQL or SQLite), read through a server-side cursor."""

    type: Literal["sql"]
    url: str = Field(description="postgresql://... or sqlite:///path")
    query: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


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
