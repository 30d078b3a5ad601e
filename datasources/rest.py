"""``rest``: a JSON HTTP API, fetched page by page with httpx.

Per page: one request (``method`` GET or POST; ``url``, ``params``, ``headers`` and the
JSON ``body`` rendered once per run with ``datasources.templates``; ``${env.NAME}``
secrets only in headers and body), retried per ``datasources.http``, authenticated
per ``datasources.auth``. The answer must be JSON; the items are the list at
``records_path`` (dotted, e.g. ``data.items``; none = the answer is the list). Items are
yielded page by page, so memory holds one page. After ``max_pages`` pages the fetch
stops (with a warning in the log) even if the API has more.

A cancelled run (``ctx.cancel``) stops between pages, and a request in flight is
interrupted (``datasources.http``).

``timeout_s`` and ``max_retries`` given in the config win; when a config does not give
them (null), the worker's ``SLURP_HTTP_TIMEOUT_S`` / ``SLURP_HTTP_RETRIES`` apply.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import httpx

from contracts.datasources import RestSource
from datasources.auth import authenticator
from datasources.base import Item, Source
from datasources.context import RunContext
from datasources.errors import DatasourceError, ResponseFormatError
from datasources.http import BODY_SNIPPET_CHARS, HttpClient
from datasources.json_source import find_records
from datasources.pagination import PageAnswer, Paginator
from datasources.progress import SourceProgress
from datasources.redaction import Redactor
from datasources.templates import TemplateValues, render, render_tree

__all__ = ["RestItems"]

log = logging.getLogger(__name__)


class RestItems(Source[RestSource]):
    type = "rest"

    def open(self, ctx: RunContext, progress: SourceProgress) -> Iterator[Item]:
        redactor = self.runtime.redactor()
        try:
            yield from self._fetch(ctx, progress, redactor)
        except DatasourceError as exc:
            exc.redact(redactor)
            raise

    def _fetch(
        self, ctx: RunContext, progress: SourceProgress, redactor: Redactor
    ) -> Iterator[Item]:
        config, runtime = self.config, self.runtime
        plain, secret = TemplateValues(ctx), TemplateValues(ctx, redactor)
        url = render(config.url, plain, "url")
        params = {k: render(v, plain, f"params.{k}") for k, v in config.params.items()}
        headers = {"Accept": "application/json"}
        headers.update({k: render(v, secret, f"headers.{k}") for k, v in config.headers.items()})
        body = render_tree(config.body, secret, "body") if config.body is not None else None
        auth = authenticator(config.auth, redactor, runtime.token_cache)
        paginator = Paginator(config.pagination, url, params)
        with HttpClient(
            timeout_s=config.timeout_s or runtime.http_timeout_s,
            backoff=runtime.backoff(config.max_retries),
            redactor=redactor,
            policy=runtime.policy,
            sleep=runtime.sleep,
            cancel=ctx.cancel,
        ) as http:
            request = paginator.first()
            pages = 0
            while True:
                if ctx.cancel is not None:
                    ctx.cancel.check()  # between pages
                response = http.send(
                    config.method,
                    request.url,
                    params=request.params or None,
                    headers=headers,
                    json=body,
                    auth=auth,
                )
                pages += 1
                progress.page()
                label = f"{config.method} {response.request.url}"
                document = _json(response, label)
                items = find_records(document, config.records_path, f"the answer of {label}")
                yield from items
                link = response.links.get("next", {}).get("url")
                next_link = urljoin(str(response.url), link) if link else None
                following = paginator.next(PageAnswer(request, document, len(items), next_link))
                if following is None:
                    return
                if pages >= config.max_pages:
                    log.warning(
                        "%s",
                        redactor(
                            f"datasource {config.name!r}: stopped after max_pages={pages} "
                            f"pages; the API has more (last: {label})"
                        ),
                    )
                    return
                request = following


def _json(response: httpx.Response, label: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        kind = response.headers.get("content-type", "no content-type")
        text = " ".join(response.text[:BODY_SNIPPET_CHARS].split()) or "(empty body)"
        raise ResponseFormatError(
            f"the answer of {label} is not JSON ({kind}; {exc}): {text}"
        ) from None
