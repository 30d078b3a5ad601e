"""``soap``: one operation of a SOAP service, described by its WSDL, called with zeep.

- The WSDL (and every schema it imports) is an http(s) URL or a local file below the
  policy's file roots (symlinks resolved); zeep's XML parsing refuses external entities.
- The operation (``operation``; ``service``/``port`` pick one where the WSDL has several,
  ``endpoint`` overrides the address) is called with ``args`` (nested objects for
  complex types; templates in strings, ``${env.NAME}`` secrets allowed). Its result is
  turned into plain values (``zeep.helpers.serialize_object``); the items are the list
  at ``result_path`` (dotted; none: the result itself, a list or one item).
- ``pagination`` calls the operation again and again: ``page``/``offset`` set the
  argument ``param`` per call (``size`` in ``size_param``), ``cursor`` passes the value at
  ``cursor_path`` of the last result; it stops on an empty page, a short page, an
  empty cursor or after ``max_pages``. Memory holds one answer.
- Auth: HTTP ``basic``, ``bearer``, ``oauth2_client_credentials`` and ``oauth2_password``
  as for ``rest`` (``datasources.auth``), and/or a WS-Security ``UsernameToken``
  (``wsse``, password as text or digest) in the SOAP header.
- Every request (WSDL, schemas, calls, OAuth2 tokens) goes through the policy's egress
  rules (``datasources.egress``), proxies of the environment are not used.
- Errors: a SOAP Fault is a ``SoapFaultError`` (permanent, naming the fault code and
  string); connection errors, timeouts, 408/429 and 5xx answers without a Fault are
  retried up to ``max_retries`` and then fail retryable; an unknown operation or
  arguments the WSDL does not accept are ``ConfigError``s; an answer that is not SOAP
  is a ``ResponseFormatError``. Messages pass through the redactor (no secret in them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from contracts.datasources import SoapSource
from datasources.auth import authenticator
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.egress import EgressTransport
from datasources.errors import (
    ConfigError,
    DatasourceError,
    FetchError,
    NotAllowedError,
    ResponseFormatError,
    SoapFaultError,
)
from datasources.http import RETRY_STATUSES, Authenticator, HttpClient
from datasources.json_source import find_records
from datasources.progress import SourceProgress
from datasources.redaction import Redactor
from datasources.rows import jsonable
from datasources.templates import TemplateValues, render, render_tree

__all__ = ["SoapItems"]

#: Characters of an answer quoted in an error message.
_SNIPPET_CHARS = 300


class SoapItems(Source[SoapSource]):
    type = "soap"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        redactor = self.runtime.redactor()
        try:
            yield from self._fetch(ctx, progress, redactor)
        except DatasourceError as error:
            error.redact(redactor)
            raise

    def _fetch(
        self, ctx: RunContext, progress: SourceProgress, redactor: Redactor
    ) -> Iterator[Item]:
        config, runtime = self.config, self.runtime
        zeep = _zeep()
        plain, secret = TemplateValues(ctx), TemplateValues(ctx, redactor)
        args = render_tree(config.args, secret, "args")
        headers = {k: render(v, secret, f"headers.{k}") for k, v in config.headers.items()}
        auth = authenticator(config.auth, redactor, runtime.token_cache)
        wsse = None
        if config.wsse is not None:
            from zeep.wsse.username import UsernameToken

            username = redactor.secret(config.wsse.username_env, "WS-Security username")
            password = redactor.secret(config.wsse.password_env, "WS-Security password")
            wsse = UsernameToken(username, password, use_digest=config.wsse.digest)  # type: ignore[no-untyped-call]
        endpoint = render(config.endpoint, plain, "endpoint") if config.endpoint else None
        timeout_s = config.timeout_s or runtime.http_timeout_s
        poster = httpx.Client(
            timeout=httpx.Timeout(timeout_s),
            transport=EgressTransport(runtime.policy),
            trust_env=False,
        )
        with (
            contextlib.closing(poster),
            HttpClient(
                timeout_s=timeout_s,
                backoff=runtime.backoff(config.max_retries),
                redactor=redactor,
                policy=runtime.policy,
                sleep=runtime.sleep,
                cancel=ctx.cancel,
            ) as http,
        ):
            post = _Poster(poster, http, auth, runtime.sleep, ctx)
            transport = _transport(zeep, self, http, auth, headers, post)
            settings = zeep.Settings(strict=True, xml_huge_tree=False, forbid_dtd=True)
            try:
                client = zeep.Client(
                    self._wsdl_location(), transport=transport, settings=settings, wsse=wsse
                )
                service = _service(client, config.service, config.port, endpoint)
                call = _operation(service, config.operation)
            except DatasourceError:
                raise
            except Exception as error:
                raise _zeep_error(zeep, error, "loading the WSDL") from None
            yield from self._pages(zeep, call, args, progress, ctx)

    def _wsdl_location(self) -> str:
        wsdl = self.config.wsdl
        if wsdl.lower().startswith(("http://", "https://")):
            return wsdl
        return str(self.runtime.policy.resolve_file(wsdl, "wsdl"))

    def _pages(
        self,
        zeep: Any,
        call: Any,
        args: dict[str, Any],
        progress: SourceProgress,
        ctx: RunContext,
    ) -> Iterator[Item]:
        config = self.config
        paging = config.pagination
        label = f"operation {config.operation!r}"
        seen_cursors: set[str] = set()
        position = paging.start if paging and paging.start is not None else None
        if paging is not None and position is None:
            position = 1 if paging.style == "page" else 0
        for page in range(config.max_pages):
            if ctx.cancel is not None:
                ctx.cancel.check()  # between pages
            call_args = dict(args)
            if paging is not None:
                if paging.size_param and paging.size is not None:
                    call_args[paging.size_param] = paging.size
                if paging.style != "cursor" or page > 0:
                    call_args[paging.param] = position
            try:
                result = call(**call_args)
            except DatasourceError:
                raise
            except Exception as error:
                raise _zeep_error(zeep, error, f"calling {label}") from None
            progress.page()
            document = jsonable(zeep.helpers.serialize_object(result, target_cls=dict))
            items = _items(document, config.result_path, label)
            yield from items
            if paging is None or not items:
                return
            if paging.style in ("page", "offset"):
                if paging.size is not None and len(items) < paging.size:
                    return
                position = (position or 0) + (1 if paging.style == "page" else len(items))
            else:
                assert paging.cursor_path is not None
                cursor = _at(document, paging.cursor_path)
                if cursor in (None, ""):
                    return
                if str(cursor) in seen_cursors:
                    raise ResponseFormatError(
                        f"{label} returned the cursor {cursor!r} twice (at {paging.cursor_path})"
                    )
                seen_cursors.add(str(cursor))
                position = cursor
        # max_pages reached: like rest, the fetch stops here (the service may have more)


def _zeep() -> Any:
    try:
        import zeep
        import zeep.helpers
    except ImportError as error:
        raise ConfigError(
            f"the SOAP client zeep is not installed on this worker ({error}): install "
            "slurp[soap] (pip install 'slurp[soap]')"
        ) from None
    return zeep


def _service(client: Any, service: str | None, port: str | None, endpoint: str | None) -> Any:
    services = client.wsdl.services
    if not services:
        raise ConfigError("the WSDL defines no service")
    if service is not None and service not in services:
        raise ConfigError(f"the WSDL has no service {service!r}; it has: {', '.join(services)}")
    chosen = services[service] if service is not None else next(iter(services.values()))
    ports = chosen.ports
    if port is not None and port not in ports:
        raise ConfigError(
            f"service {chosen.name!r} has no port {port!r}; it has: {', '.join(ports)}"
        )
    chosen_port = ports[port] if port is not None else next(iter(ports.values()))
    address = endpoint or chosen_port.binding_options.get("address")
    return client.create_service(chosen_port.binding.name, address)


def _operation(service: Any, name: str) -> Any:
    operations = service._binding._operations
    if name not in operations:
        raise ConfigError(
            f"the service has no operation {name!r}; it has: {', '.join(sorted(operations))}"
        )
    return service[name]


def _items(document: Any, path: str | None, label: str) -> list[Any]:
    if path is None:
        if document is None:
            return []
        return list(document) if isinstance(document, list) else [document]
    value = _at(document, path)
    if value is None:
        return []  # an empty sequence is left out of the answer
    if not isinstance(value, list):
        # one element of a maxOccurs="unbounded" sequence may come as the item itself
        return [value] if isinstance(value, dict) else find_records(document, path, label)
    return value


def _at(document: Any, path: str) -> Any:
    value = document
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _zeep_error(zeep: Any, error: Exception, doing: str) -> DatasourceError:
    exceptions = zeep.exceptions
    if isinstance(error, exceptions.Fault):
        code = str(error.code or "")
        return SoapFaultError(
            f"{doing}: the service answered a SOAP Fault: {code}: {error.message}", code=code
        )
    if isinstance(error, exceptions.TransportError):
        status = int(error.status_code or 0)
        snippet = _snippet(error.content)
        return FetchError(
            f"{doing}: HTTP {status}: {snippet}", retryable=status in RETRY_STATUSES, status=status
        )
    if isinstance(error, exceptions.XMLSyntaxError | exceptions.XMLParseError):
        return ResponseFormatError(f"{doing}: the answer is not valid XML: {error}")
    if isinstance(error, exceptions.ValidationError | TypeError | exceptions.LookupError):
        return ConfigError(f"{doing}: {type(error).__name__}: {error}")
    if isinstance(error, exceptions.Error | ValueError | KeyError | AttributeError):
        return ResponseFormatError(f"{doing}: {type(error).__name__}: {error}")
    return FetchError(f"{doing}: {type(error).__name__}: {error}")


def _snippet(content: Any) -> str:
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    text = " ".join(str(content or "").split())
    return (text[:_SNIPPET_CHARS] + "...") if len(text) > _SNIPPET_CHARS else text or "(empty)"


def _transport(
    zeep: Any,
    source: SoapItems,
    http: HttpClient,
    auth: Authenticator | None,
    headers: dict[str, str],
    post: _Poster,
) -> Any:
    """A zeep transport whose every request goes through ``http`` (egress rules,
    retries, secret masking) and whose local files are checked against the file roots."""
    import requests

    policy = source.runtime.policy

    class Transport(zeep.Transport):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(timeout=http.timeout_s, operation_timeout=http.timeout_s)

        def load(self, url: str) -> bytes:
            if not url:
                raise ValueError("No url given to load")
            scheme = urlsplit(url).scheme.lower()
            if scheme in ("http", "https"):
                response = http.send("GET", url, headers={"Accept": "*/*", **headers}, auth=auth)
                return response.content
            if scheme not in ("", "file"):
                raise NotAllowedError(f"wsdl: {url!r}: only http(s) URLs and local files")
            raw = unquote(urlsplit(url).path) if scheme == "file" else url
            resolved = policy.resolve_file(raw, "wsdl")
            try:
                with open(resolved, "rb") as file:
                    policy.check_opened(file.fileno(), raw, "wsdl")
                    return file.read()
            except FileNotFoundError:
                raise FetchError(f"wsdl: {raw!r} does not exist", retryable=False) from None

        def get(self, address: str, params: Any, headers_: Any) -> Any:
            response = http.send("GET", address, params=params, headers={**headers, **headers_},
                                 auth=auth)  # fmt: skip
            return _as_requests(requests, response)

        def post(self, address: str, message: Any, headers_: Any) -> Any:
            return _as_requests(requests, post(address, message, {**headers_, **headers}))

    return Transport()


class _Poster:
    """POSTs SOAP envelopes: retried like ``HttpClient.send`` on connection errors,
    timeouts and 408/429/5xx answers, except that a 500 carrying a SOAP Fault goes to
    zeep at once (a Fault is an answer, not an outage). ``client`` sends through the
    egress rules."""

    def __init__(
        self,
        client: httpx.Client,
        http: HttpClient,
        auth: Authenticator | None,
        sleep: Callable[[float], None],
        ctx: RunContext,
    ) -> None:
        self.client, self.http, self.auth, self.sleep, self.ctx = client, http, auth, sleep, ctx

    def __call__(self, address: str, message: Any, headers: dict[str, str]) -> httpx.Response:
        http, auth = self.http, self.auth
        attempt, refreshed = 0, False
        while True:
            sent = dict(headers)
            if auth is not None:
                credentials = auth.headers(http)
                names = {name.lower() for name in credentials}
                sent = {k: v for k, v in sent.items() if k.lower() not in names}
                sent.update(credentials)
            try:
                response = self.client.post(address, content=message, headers=sent)
            except httpx.TimeoutException as error:
                problem = f"timed out after {http.timeout_s:g} s ({type(error).__name__})"
            except httpx.TransportError as error:
                problem = f"connection failed ({type(error).__name__}: {error})"
            else:
                status = response.status_code
                if status == 401 and auth is not None and not refreshed and auth.invalidate():
                    refreshed = True
                    continue
                fault = status == 500 and b"Fault" in response.content
                if status not in RETRY_STATUSES or fault:
                    return response
                problem = f"HTTP {status} {response.reason_phrase}"
            if attempt >= http.backoff.retries:
                raise FetchError(
                    http.redact(f"POST {address}: {problem} (gave up after {attempt + 1} attempts)")
                )
            wait_s = http.backoff.delay_s(attempt)
            attempt += 1
            if self.ctx.cancel is not None:
                if self.ctx.cancel.wait(wait_s):
                    self.ctx.cancel.check()
            else:
                self.sleep(wait_s)


def _as_requests(requests: Any, response: httpx.Response) -> Any:
    """The ``requests.Response`` zeep expects, from an httpx answer."""
    converted = requests.Response()
    converted._content = response.content
    converted.status_code = response.status_code
    converted.headers = requests.structures.CaseInsensitiveDict(response.headers)
    converted.encoding = response.encoding
    converted.url = str(response.url)
    return converted
