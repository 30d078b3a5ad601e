"""Opening a file source's bytes as a stream: a local ``path`` or an http(s) ``url``.

Both are read incrementally (never whole). ``path`` and ``url`` may use run-time
templates (``data/export-${yesterday}.csv``); relative paths are relative to the
worker's working directory. A path is opened only if, once rendered and its symlinks
resolved, it lies below one of the policy's file roots (checked again on the file
actually opened); a URL only reaches hosts the policy allows (``datasources.egress``).
A name ending in ``.gz`` is decompressed on the fly (an
HTTP ``Content-Encoding`` is decoded anyway). A URL is fetched with the retries of
``datasources.http`` for the *opening* request; a connection lost mid-stream fails the
fetch (retryable). ``headers`` (templates and ``${env.NAME}`` secrets allowed) and
``auth`` apply to URLs.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Literal, Protocol, cast

import httpx

from contracts.datasources import Auth
from datasources.auth import authenticator
from datasources.context import RunContext
from datasources.errors import DatasourceError, FetchError
from datasources.http import HttpClient
from datasources.policy import JobPolicy
from datasources.redaction import Redactor
from datasources.runtime import Runtime
from datasources.templates import TemplateValues, render

__all__ = ["FileLocation", "open_binary"]

#: Bytes per read from a local file or an HTTP stream.
CHUNK_BYTES = 1 << 16


class FileLocation(Protocol):
    """The fields of a file source's config that say where its bytes are."""

    @property
    def path(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def auth(self) -> Auth | None: ...


class _ResponseReader(io.RawIOBase):
    """A streamed httpx answer as a raw binary file."""

    def __init__(self, response: httpx.Response, label: str, redactor: Redactor) -> None:
        self._chunks = response.iter_bytes(CHUNK_BYTES)
        self._buffer = b""
        self._label = label
        self._redact = redactor

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
            except httpx.HTTPError as exc:
                raise FetchError(
                    self._redact(f"{self._label}: download failed: {type(exc).__name__}: {exc}")
                ) from None
        size = min(len(buffer), len(self._buffer))
        buffer[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _open_local(raw: str, policy: JobPolicy) -> IO[bytes]:
    """``raw`` opened for reading, if the policy allows the file it leads to."""
    resolved = policy.resolve_file(raw, "path")
    gzipped = raw.endswith(".gz")
    # returned open: the caller closes it
    handle = cast(IO[bytes], gzip.open(resolved, "rb") if gzipped else resolved.open("rb"))  # noqa: SIM115
    try:
        policy.check_opened(handle.fileno(), raw, "path")
    except BaseException:
        handle.close()
        raise
    return handle


@contextmanager
def open_binary(
    config: FileLocation,
    ctx: RunContext,
    runtime: Runtime,
    *,
    method: Literal["GET", "POST"] = "GET",
    body: str | None = None,
) -> Iterator[IO[bytes]]:
    """The source's bytes as a binary file; closed on exit."""
    if config.path is not None:
        rendered = render(config.path, TemplateValues(ctx), "path")
        path = Path(rendered)
        try:
            handle = _open_local(rendered, runtime.policy)
        except FileNotFoundError:
            raise FetchError(f"no such file: {path}") from None
        except OSError as exc:
            raise FetchError(
                f"cannot open {path}: {exc.strerror or exc}", retryable=False
            ) from None
        with handle:
            yield handle
        return
    assert config.url is not None
    redactor = runtime.redactor()
    url = render(config.url, TemplateValues(ctx), "url")
    secret_values = TemplateValues(ctx, redactor)
    headers = {k: render(v, secret_values, f"headers.{k}") for k, v in config.headers.items()}
    content = render(body, secret_values, "body") if body is not None else None
    try:
        auth = authenticator(config.auth, redactor, runtime.token_cache)
        with HttpClient(
            timeout_s=runtime.http_timeout_s,
            backoff=runtime.backoff(),
            redactor=redactor,
            policy=runtime.policy,
            sleep=runtime.sleep,
            cancel=ctx.cancel,
        ) as http:
            response = http.send(
                method, url, headers=headers, content=content, auth=auth, stream=True
            )
            try:
                raw = _ResponseReader(response, f"{method} {url}", redactor)
                stream: IO[bytes] = io.BufferedReader(raw, CHUNK_BYTES)
                if httpx.URL(url).path.endswith(".gz"):
                    stream = cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb"))
                yield stream
            finally:
                response.close()
    except DatasourceError as exc:
        exc.redact(redactor)
        raise
