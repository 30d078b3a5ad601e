"""Console sign-in: server-side sessions, the session cookie, CSRF tokens, forms.

- Signing in checks the API's users with the API's own ``Authenticator.login`` (same
  passwords, same failed-login limit). A session is a document in
  ``slurp_console_sessions`` keyed by the SHA-256 of a random 256-bit token; the
  browser holds the token in the ``slurp_session`` cookie (HttpOnly, SameSite=Strict,
  Path=/, Secure when the request came over HTTPS). Logging out deletes the document,
  so a copied cookie dies with it. Sessions last ``refresh_ttl_s`` of the API config.
- The user is looked up (settings, then database) on every request, like the API's
  tokens: removing a user or changing their role or ACL applies at once.
- CSRF: every state-changing form carries the session's random ``csrf`` token, which
  must match (constant-time compare); the login form, before any session exists,
  uses a double-submit token (a ``slurp_login_csrf`` cookie equal to the form field).
  With SameSite=Strict cookies on top, a cross-site form cannot act for a user.
- Forms are read by ``read_form``: ``application/x-www-form-urlencoded`` only, at
  most ``MAX_FORM_BYTES`` and ``MAX_FORM_FIELDS`` (bounded before parsing).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import Depends, Request, Response
from pymongo import ASCENDING

from api.config import UserSpec
from api.console.render import LoginRequired, root_path
from api.context import ApiContext, get_context
from api.errors import ApiError, BadRequest
from contracts.base import utcnow
from storage.store import Doc, Store

__all__ = [
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "CsrfFailed",
    "Form",
    "Session",
    "SessionStore",
    "Viewer",
    "ViewerDep",
    "check_csrf",
    "clear_cookie",
    "current_viewer",
    "read_form",
    "set_cookie",
]

SESSIONS_COLLECTION = "slurp_console_sessions"
SESSION_COOKIE = "slurp_session"
LOGIN_CSRF_COOKIE = "slurp_login_csrf"
#: Random bytes of a session token and of a CSRF token.
TOKEN_BYTES = 32
#: Largest form body accepted, and most fields in it.
MAX_FORM_BYTES = 16 * 1024
MAX_FORM_FIELDS = 50
#: Lifetime of the login form's CSRF cookie.
LOGIN_CSRF_TTL_S = 3600
FORM_TYPE = "application/x-www-form-urlencoded"


class CsrfFailed(ApiError):
    status_code = 403

    def __init__(self) -> None:
        super().__init__(
            "This form's security token is missing or out of date, so nothing was done. "
            "Reload the page and try again."
        )


class PayloadTooLarge(ApiError):
    status_code = 413


@dataclass(frozen=True)
class Session:
    username: str
    csrf: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class SessionStore:
    """Sessions in MongoDB, one document each: ``{_id: sha256(token), username, csrf,
    created_at, expires_at}``."""

    def __init__(self, store: Store, ttl_s: float, clock: Callable[[], datetime] = utcnow) -> None:
        self.docs = store.db[SESSIONS_COLLECTION]
        self.ttl = timedelta(seconds=ttl_s)
        self._clock = clock

    def create(self, username: str) -> tuple[str, Session]:
        """A new session for ``username``: its token (for the cookie) and itself.
        Expired sessions are removed on the way."""
        now = self._clock()
        self.docs.create_index([("expires_at", ASCENDING)])
        self.docs.delete_many({"expires_at": {"$lt": now}})
        token = secrets.token_urlsafe(TOKEN_BYTES)
        session = Session(username, secrets.token_urlsafe(TOKEN_BYTES), now + self.ttl)
        doc: Doc = {
            "_id": _digest(token),
            "username": username,
            "csrf": session.csrf,
            "created_at": now,
            "expires_at": session.expires_at,
        }
        self.docs.insert_one(doc)
        return token, session

    def get(self, token: str) -> Session | None:
        """The live session of ``token``; None if unknown or expired."""
        if not token or len(token) > 256:
            return None
        doc = self.docs.find_one({"_id": _digest(token)})
        if doc is None:
            return None
        expires = doc["expires_at"]
        if expires.tzinfo is None:  # a client without tz_aware=True
            expires = expires.replace(tzinfo=self._clock().tzinfo)
        if expires <= self._clock():
            self.docs.delete_one({"_id": doc["_id"]})
            return None
        return Session(str(doc["username"]), str(doc["csrf"]), expires)

    def delete(self, token: str) -> None:
        if token:
            self.docs.delete_one({"_id": _digest(token)})


def sessions_for(context: ApiContext) -> SessionStore:
    return SessionStore(context.store, context.config.refresh_ttl_s)


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of a console request, and their session."""

    user: UserSpec
    session: Session

    @property
    def admin(self) -> bool:
        return self.user.role == "admin"


def current_viewer(
    request: Request, context: Annotated[ApiContext, Depends(get_context)]
) -> Viewer:
    """The signed-in user; ``LoginRequired`` (a redirect to the login page) if none."""
    session = sessions_for(context).get(request.cookies.get(SESSION_COOKIE, ""))
    user = context.auth.user(session.username) if session is not None else None
    if session is None or user is None:
        raise LoginRequired()
    viewer = Viewer(user, session)
    request.state.viewer = viewer
    return viewer


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


async def read_form(request: Request) -> dict[str, str]:
    """The request's form fields (the last value of a repeated name), bounded; no
    body at all is an empty form (a forged POST then fails its CSRF check)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise PayloadTooLarge(f"the form is larger than {MAX_FORM_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge(f"the form is larger than {MAX_FORM_BYTES} bytes")
    if not body:
        return {}
    if kind != FORM_TYPE:
        raise BadRequest(f"expected a form ({FORM_TYPE})")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not valid UTF-8 or has too many fields") from None
    return dict(pairs)


Form = Annotated[dict[str, str], Depends(read_form)]


def check_csrf(expected: str, form: dict[str, str]) -> None:
    """``CsrfFailed`` unless the form's ``csrf`` field equals ``expected``."""
    given = form.get("csrf", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CsrfFailed()


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int, path: str = "/"
) -> None:
    """A cookie scripts cannot read, sent only to this site (never on cross-site
    requests), over HTTPS only when the request came over HTTPS; ``path`` is below
    the app's root path."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=root_path(request) + path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(request: Request, response: Response, name: str, path: str = "/") -> None:
    response.delete_cookie(
        name,
        path=root_path(request) + path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
