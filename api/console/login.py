"""``GET|POST /login`` and ``POST /logout`` (see ``sessions`` for how sessions work).

A failed login re-shows the form with one message ("Wrong username or password", or
the rate limit's wait), never which of the two was wrong. After signing in the
browser goes back to the page that asked for it (``next``: a path on this site only).
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from api.auth import client_ip
from api.console.render import ConsoleRoute, page, redirect
from api.console.sessions import (
    LOGIN_CSRF_COOKIE,
    LOGIN_CSRF_TTL_S,
    SESSION_COOKIE,
    TOKEN_BYTES,
    CsrfFailed,
    Form,
    ViewerDep,
    check_csrf,
    clear_cookie,
    sessions_for,
    set_cookie,
)
from api.context import ApiContext, get_context
from api.errors import NotAuthenticated, RateLimited

__all__ = ["router"]

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

Context = Annotated[ApiContext, Depends(get_context)]
#: Longest username and password the form accepts (as the token endpoint).
MAX_USERNAME = 150
MAX_PASSWORD = 1024
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def _safe_next(target: str) -> str:
    """``target`` if it is a path on this site, else '/' (no open redirect)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_form(
    request: Request,
    next_path: str,
    error: str | None = None,
    status_code: int = 200,
    username: str = "",
) -> Response:
    # One token per browser (several login tabs stay valid), renewed when missing.
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not _TOKEN_RE.fullmatch(token):
        token = secrets.token_urlsafe(TOKEN_BYTES)
    response = page(
        request,
        "login.html",
        {"csrf": token, "next": _safe_next(next_path), "error": error, "username": username},
        status_code=status_code,
    )
    set_cookie(request, response, LOGIN_CSRF_COOKIE, token, LOGIN_CSRF_TTL_S, path="/login")
    return response


@router.get("/login")
def login_page(request: Request, context: Context, next: str = "/") -> Response:
    """The sign-in form (signed-in users go straight on)."""
    session = sessions_for(context).get(request.cookies.get(SESSION_COOKIE, ""))
    if session is not None and context.auth.user(session.username) is not None:
        return redirect(request, _safe_next(next))
    return _login_form(request, next)


@router.post("/login")
def login(request: Request, form: Form, context: Context) -> Response:
    """Check the credentials, open a session, go on to ``next``."""
    next_path = form.get("next", "/")
    username = form.get("username", "")[:MAX_USERNAME]
    try:
        check_csrf(request.cookies.get(LOGIN_CSRF_COOKIE, ""), form)
    except CsrfFailed as exc:
        return _login_form(request, next_path, exc.detail, 403, username)
    password = form.get("password", "")
    if not username or not password or len(password) > MAX_PASSWORD:
        return _login_form(request, next_path, "Enter your username and password.", 400, username)
    try:
        context.auth.check_password(username, password, client_ip(request))
    except NotAuthenticated:
        return _login_form(request, next_path, "Wrong username or password.", 401, username)
    except RateLimited as exc:
        response = _login_form(request, next_path, exc.detail, 429, username)
        response.headers.update(exc.headers)
        return response
    token, _ = sessions_for(context).create(username)
    response = redirect(request, _safe_next(next_path))
    set_cookie(request, response, SESSION_COOKIE, token, int(context.config.refresh_ttl_s))
    clear_cookie(request, response, LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
def logout(request: Request, viewer: ViewerDep, form: Form, context: Context) -> Response:
    """End the session (the cookie stops working everywhere at once)."""
    check_csrf(viewer.session.csrf, form)
    sessions_for(context).delete(request.cookies.get(SESSION_COOKIE, ""))
    response = redirect(request, "/login")
    clear_cookie(request, response, SESSION_COOKIE)
    return response
