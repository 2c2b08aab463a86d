"""HTTP route for what became of a queue message: the reply envhub recorded for its correlation id."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from functions.http_api.deps import services
from functions.http_api.schemas import problem_responses
from shared.bootstrap import Services

router = APIRouter(responses=problem_responses(401, 403, 404))
Svc = Annotated[Services, Depends(services)]


class MessageOut(BaseModel):
    """A message envhub took from a queue: when, and the reply it gave (none yet while it is being processed)."""

    workspace: str
    correlation_id: str
    claimed_at: datetime
    reply: dict[str, Any] | None = Field(None, description="the reply as it was sent (`status`, `environment`, "
                                                           "`hash`, `image`, `error`, ...)")
    build_id: str | None = None


@router.get("/workspaces/{workspace}/messages/{correlation_id:path}", response_model=MessageOut, tags=["messages"])
def get_message(workspace: str, correlation_id: str, svc: Svc) -> MessageOut:
    """What became of the registration or job submission sent with this correlation id (for a sender whose reply
    went missing)."""
    entry = svc.intake.entry(workspace, correlation_id)
    return MessageOut(workspace=entry.workspace, correlation_id=entry.correlation_id, claimed_at=entry.claimed_at,
                      reply=entry.reply, build_id=entry.build_id)
