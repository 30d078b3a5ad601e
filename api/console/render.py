"""Rendering console pages: the Jinja2 environment, the page and error responses, the
security headers, and ``ConsoleRoute``, which turns every failure into an HTML page.

- Templates (``templates/``) autoescape everything; values are never marked safe
  except the SVG chart, which ``chart`` builds from escaped parts.
- Every page carries a Content-Security-Policy allowing only this origin's own
  scripts and styles (no inline script, no CDN), ``nosniff``, ``DENY`` framing and
  ``no-store`` caching (pages hold data the next user of the browser may not see).
- ``ConsoleRoute`` catches what the API would answer as JSON (``ApiError``, storage
  lookups, database errors, bad parameters) and renders ``error.html`` with the same
  status and a message safe to show; ``LoginRequired`` becomes a redirect to the
  login page that comes back afterwards.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from pymongo.errors import PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.console import views
from api.console.chart import runs_chart
from api.errors import ApiError
from storage.errors import CollectionNotFoundError, JobNotFoundError, VersionNotFoundError

__all__ = [
    "STATIC",
    "ConsoleRoute",
    "LoginRequired",
    "error_page",
    "page",
    "redirect",
    "root_path",
    "static_files",
]

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: Content types of the vendored files served under ``/static/``.
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class LoginRequired(Exception):
    """The page needs a signed-in user; the route answers with the login page's URL."""


def root_path(request: Request) -> str:
    """The prefix the app is served under ('' at the root)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


@functools.cache
def static_files() -> dict[str, tuple[bytes, str, str]]:
    """Every vendored file by name: (content, content type, short content hash)."""
    files = {}
    for path in sorted(STATIC.iterdir()):
        if path.suffix in STATIC_TYPES:
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()[:12]
            files[path.name] = (data, STATIC_TYPES[path.suffix], digest)
    return files


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,  # history documents may lack fields
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        segment=lambda value: quote(str(value), safe=""),
        duration=views.duration,
        number=views.number,
        status_class=views.status_class,
        compact=views.compact,
        instant=views.instant,
        changes=views.change_summary,
    )
    env.globals.update(runs_chart=runs_chart)
    return env


def _static_url(root: str) -> Callable[[str], str]:
    def url(name: str) -> str:
        return f"{root}/static/{name}?v={static_files()[name][2]}"

    return url


def page(
    request: Request,
    template: str,
    values: dict[str, Any],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """``template`` rendered with ``values`` (plus the viewer, messages and helpers)."""
    root = root_path(request)
    context = {
        "request": request,
        "root": root,
        "static": _static_url(root),
        "viewer": getattr(request.state, "viewer", None),
        "notice": None,
        "error": None,
        "nav": "",
        **values,
    }
    html = environment().get_template(template).render(context)
    response = HTMLResponse(html, status_code=status_code, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    titles = {
        400: "Bad request",
        403: "Not allowed",
        404: "Not found",
        409: "Conflict",
        429: "Too many attempts",
        503: "Unavailable",
    }
    title = titles.get(status_code, "Error")
    return page(
        request, "error.html", {"title": title, "message": message, "code": status_code},
        status_code=status_code,
    )  # fmt: skip


def redirect(request: Request, path: str) -> RedirectResponse:
    """303 See Other to ``path`` (a console path starting with '/')."""
    return RedirectResponse(root_path(request) + path, status_code=303)


def _login_redirect(request: Request) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET":
        target = "/"
    return redirect(request, "/login?next=" + quote(target, safe="/"))


def _failure_page(request: Request, exc: Exception) -> Response:
    if isinstance(exc, LoginRequired):
        return _login_redirect(request)
    if isinstance(exc, ApiError):
        response: Response = error_page(request, exc.status_code, exc.detail)
        response.headers.update(exc.headers)
        return response
    if isinstance(exc, CollectionNotFoundError | VersionNotFoundError):
        return error_page(request, 404, str(exc))
    if isinstance(exc, JobNotFoundError):
        return error_page(request, 404, "No such job.")
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        return error_page(request, 400, f"Invalid parameter: {problems}")
    if isinstance(exc, StarletteHTTPException):
        return error_page(request, exc.status_code, str(exc.detail))
    if isinstance(exc, PyMongoError):
        log.warning("database error on %s %s: %s", request.method, request.url.path, exc)
        return error_page(request, 503, "The database is unavailable; try again later.")
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_page(request, 500, "Internal error; the details are in the server's log.")


class ConsoleRoute(APIRoute):
    """A route whose failures are HTML pages, and whose answers carry the security
    headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except Exception as exc:
                try:
                    response = _failure_page(request, exc)
                except Exception:  # the error page itself failed: plain text, logged
                    log.exception("error page failed on %s", request.url.path)
                    response = Response("Internal error.", 500, media_type="text/plain")
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handle
