"""Unauthenticated endpoints: ``GET /api/health`` and ``GET /metrics``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from api.context import ApiContext, get_context
from api.errors import error_responses

__all__ = ["router"]

router = APIRouter(tags=["system"])

Context = Annotated[ApiContext, Depends(get_context)]


class HealthOut(BaseModel):
    status: str


@router.get("/api/health", responses=error_responses())
def health(context: Context) -> HealthOut:
    """200 when the API can reach its database; 503 otherwise. No token needed."""
    context.store.db.command("ping")
    return HealthOut(status="ok")


@router.get("/metrics", include_in_schema=False)
def metrics(context: Context) -> Response:
    """Prometheus metrics of this API process. No token needed."""
    return Response(context.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
