"""Dependencies shared by the routes: the services and paging links."""

from __future__ import annotations

from fastapi import Request

from shared.bootstrap import Services


def services(request: Request) -> Services:
    """The services the app was built with."""
    svc: Services = request.app.state.services
    return svc


def next_link(request: Request, cursor: str | None) -> str | None:
    """The URL of the next page, Azure style."""
    if cursor is None:
        return None
    return str(request.url.include_query_params(**{"$skiptoken": cursor}))
