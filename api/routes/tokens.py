"""simplejwt's endpoints under ``/api/token/``: obtain, refresh (rotating), verify,
blacklist (alias ``logout``).

Bodies are JSON or ``application/x-www-form-urlencoded`` (what ``curl -d`` and HTML
forms send), as Django REST framework's parsers accept; anything else is 415. A body
with missing, unknown or wrong fields is 400 with one entry per field, never echoing
a value. See ``api.auth`` for what each token operation checks.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.auth import client_ip
from api.context import ApiContext, get_context
from api.errors import BadRequest, UnsupportedMediaType, error_responses

__all__ = ["router"]

router = APIRouter(prefix="/api/token", tags=["auth"])

Context = Annotated[ApiContext, Depends(get_context)]
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
#: Most fields a form body may have (the models have at most two).
MAX_FORM_FIELDS = 20


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class TokenObtain(_Body):
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=1024)


class TokenRefresh(_Body):
    refresh: str = Field(min_length=1, max_length=4096)


class TokenVerify(_Body):
    token: str = Field(min_length=1, max_length=4096)


class TokenPairOut(BaseModel):
    access: str = Field(description="Access token: send as 'Authorization: Bearer <access>'.")
    refresh: str = Field(
        description="Refresh token: POST it to /api/token/refresh/ once (it is rotated)."
    )


class EmptyOut(BaseModel):
    """simplejwt's answer to verify and blacklist: ``{}``."""


Body = TypeVar("Body", bound=_Body)


def _fields(data: bytes, media_type: str) -> Any:
    if media_type == FORM_TYPE:
        try:
            text = data.decode("utf-8")
            return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("form parse error: not UTF-8, or too many fields") from None
    if media_type == JSON_TYPE or media_type.endswith("+json"):
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise BadRequest(f"JSON parse error - {exc}") from None
    raise UnsupportedMediaType(
        f'Unsupported media type "{media_type}" in request; send {JSON_TYPE} or {FORM_TYPE}.'
    )


def body_of(model: type[Body]) -> Callable[[Request], Awaitable[Body]]:
    """A dependency reading ``model`` from a JSON or form body (400, 415 else)."""

    async def read(request: Request) -> Body:
        data = await request.body()
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        fields = _fields(data, media_type or JSON_TYPE) if data else {}
        try:
            return model.model_validate(fields)
        except ValidationError as exc:
            errors = [
                {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
                for error in exc.errors(include_input=False, include_context=False)
            ]
            raise RequestValidationError(errors) from None

    return read


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as a JSON or form body."""
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {JSON_TYPE: {"schema": schema}, FORM_TYPE: {"schema": schema}},
        }
    }


@router.post(
    "/", responses=error_responses(401, 415, 429), openapi_extra=_request_body(TokenObtain)
)
def obtain_token(
    body: Annotated[TokenObtain, Depends(body_of(TokenObtain))],
    request: Request,
    context: Context,
) -> TokenPairOut:
    """Exchange username and password for an access and a refresh token."""
    pair = context.auth.login(body.username, body.password, client_ip(request))
    return TokenPairOut(access=pair.access, refresh=pair.refresh)


@router.post(
    "/refresh/", responses=error_responses(401, 415), openapi_extra=_request_body(TokenRefresh)
)
def refresh_token(
    body: Annotated[TokenRefresh, Depends(body_of(TokenRefresh))], context: Context
) -> TokenPairOut:
    """A new access token and a new refresh token for a refresh token used for the
    first time; the old one stops working. Presenting a used refresh token again
    revokes every token of its login."""
    pair = context.auth.refresh(body.refresh)
    return TokenPairOut(access=pair.access, refresh=pair.refresh)


@router.post(
    "/verify/", responses=error_responses(401, 415), openapi_extra=_request_body(TokenVerify)
)
def verify_token(
    body: Annotated[TokenVerify, Depends(body_of(TokenVerify))], context: Context
) -> EmptyOut:
    """``{}`` if the token (access or refresh) would be accepted now; 401 otherwise."""
    context.auth.verify(body.token)
    return EmptyOut()


@router.post(
    "/blacklist/", responses=error_responses(401, 415), openapi_extra=_request_body(TokenRefresh)
)
@router.post(
    "/logout/",
    responses=error_responses(401, 415),
    openapi_extra=_request_body(TokenRefresh),
    include_in_schema=False,
)
def blacklist_token(
    body: Annotated[TokenRefresh, Depends(body_of(TokenRefresh))], context: Context
) -> EmptyOut:
    """Log out: revoke the refresh token and every token rotated from the same login
    (simplejwt's blacklist; also at ``/api/token/logout/``)."""
    context.auth.logout(body.refresh)
    return EmptyOut()
