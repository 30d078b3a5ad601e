"""``POST /api/token/`` and ``POST /api/token/refresh/`` (simplejwt's endpoints)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import client_ip
from api.context import ApiContext, get_context
from api.errors import error_responses

__all__ = ["router"]

router = APIRouter(prefix="/api/token", tags=["auth"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenObtain(_Body):
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=1024)


class TokenPairOut(BaseModel):
    access: str = Field(description="Access token: send as 'Authorization: Bearer <access>'.")
    refresh: str = Field(description="Refresh token: POST it to /api/token/refresh/.")


class TokenRefresh(_Body):
    refresh: str = Field(min_length=1, max_length=4096)


class AccessOut(BaseModel):
    access: str


@router.post("/", responses=error_responses(401, 429))
def obtain_token(
    body: TokenObtain,
    request: Request,
    context: Annotated[ApiContext, Depends(get_context)],
) -> TokenPairOut:
    """Exchange username and password for an access and a refresh token."""
    pair = context.auth.login(body.username, body.password, client_ip(request))
    return TokenPairOut(access=pair.access, refresh=pair.refresh)


@router.post("/refresh/", responses=error_responses(401))
def refresh_token(
    body: TokenRefresh, context: Annotated[ApiContext, Depends(get_context)]
) -> AccessOut:
    """A new access token for a valid refresh token."""
    return AccessOut(access=context.auth.refresh(body.refresh))
