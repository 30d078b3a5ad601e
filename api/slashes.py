"""Both spellings of an API path, with and without the trailing slash, served directly.

Django REST framework's paths end in ``/`` (``/api/collections/users/``); slurp's are
declared without one, except simplejwt's ``/api/token/...``. Starlette answers the
other spelling with a 307 redirect, which ``curl`` does not follow without ``-L`` (and
which some clients follow with a GET). ``TrailingSlashMiddleware`` rewrites the path
to the declared spelling before routing instead, by one rule: under ``/api/token`` a
path ends in ``/``; any other path under ``/api/`` does not (a test checks every
declared route against the rule). Nothing else (the console, ``/metrics``) is touched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["SLASHED_PREFIX", "TrailingSlashMiddleware", "declared_spelling"]

#: Paths under this prefix are declared with a trailing slash (simplejwt's).
SLASHED_PREFIX = "/api/token"
API_PREFIX = "/api/"


def declared_spelling(path: str) -> str:
    """``path`` as the routes declare it (unchanged outside ``/api/``)."""
    if not path.startswith(API_PREFIX) or path == API_PREFIX or "//" in path:
        return path
    if path == SLASHED_PREFIX or path.startswith(SLASHED_PREFIX + "/"):
        return path if path.endswith("/") else path + "/"
    return path.rstrip("/") if path.endswith("/") else path


class TrailingSlashMiddleware:
    """Rewrite an HTTP request's path to its declared spelling (``declared_spelling``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            wanted = declared_spelling(path)
            if wanted != path:
                scope = dict(scope)
                scope["path"] = wanted
                raw = scope.get("raw_path")
                if isinstance(raw, bytes):
                    scope["raw_path"] = raw.rstrip(b"/") if len(wanted) < len(path) else raw + b"/"
        await self.app(scope, receive, send)
