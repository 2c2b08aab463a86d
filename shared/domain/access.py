"""Who may do what: roles per workspace, principals, tokens and audit entries."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum

from pydantic import BaseModel, ConfigDict

from shared.domain.errors import InvalidDefinition
from shared.domain.naming import check_name

ANY_WORKSPACE = "*"
TOKEN_PREFIX = "envhub_"  # noqa: S105 -- a prefix, not a secret


class Role(IntEnum):
    """A role in one workspace; each includes the ones below it."""

    READER = 1
    CONTRIBUTOR = 2
    OWNER = 3

    @classmethod
    def parse(cls, text: str, *, where: str = "role") -> Role:
        """`reader`, `contributor` or `owner`, any case."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise InvalidDefinition(f"'{text}' is no role: use reader, contributor or owner", where=where) from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a subject, its roles per workspace (`*`: every one), and whether it is an admin."""

    subject: str
    grants: Mapping[str, Role] = field(default_factory=dict)
    admin: bool = False

    def role_in(self, workspace: str) -> Role | None:
        """The caller's role in `workspace`: admins own every workspace; `*` grants apply to all."""
        if self.admin:
            return Role.OWNER
        found = [r for ws, r in self.grants.items() if ws in (workspace, ANY_WORKSPACE)]
        return max(found) if found else None


class TokenRecord(BaseModel):
    """A bearer token as stored: its hash only. `workspace` is None for an admin token."""

    model_config = ConfigDict(frozen=True)

    id: str
    hash: str
    workspace: str | None
    role: Role | None
    admin: bool
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None

    def principal(self) -> Principal:
        """The caller this token speaks for."""
        grants = {} if self.workspace is None or self.role is None else {self.workspace: self.role}
        return Principal(subject=f"token:{self.id}", grants=grants, admin=self.admin)


def new_token() -> str:
    """A fresh bearer token: 256 random bits, prefixed so that scanners recognise a leaked one."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The stored form of a token; a fast hash is enough for 256 random bits."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(hash_hex: str) -> str:
    """The public id of a token (listed, revoked by): the first 16 hex digits of its hash."""
    return hash_hex[:16]


def check_grant(workspace: str | None, role: str | None, *, admin: bool) -> tuple[str | None, Role | None]:
    """A token's grant, validated: an admin token names no workspace; any other names one and a role."""
    if admin:
        if workspace or role:
            raise InvalidDefinition("an admin token has no workspace or role", where="workspace")
        return None, None
    if not workspace:
        raise InvalidDefinition("a token needs a workspace (or `*` for every one)", where="workspace")
    if workspace != ANY_WORKSPACE:
        check_name(workspace, where="workspace")
    return workspace, Role.parse(role or "reader")


class AuditEntry(BaseModel):
    """One change: who made it, what it was, when, under which request id, and how it ended."""

    model_config = ConfigDict(frozen=True)

    id: str
    workspace: str  # "" for changes outside any workspace (tokens, patch scans)
    at: datetime
    who: str
    action: str  # "POST /api/workspaces/w/environments/e/versions"
    status: int
    request_id: str


APP_ROLE_PREFIX = "envhub."


def principal_from_claims(*, subject: str, roles: list[str], groups: list[str],
                          group_grants: Mapping[str, str]) -> Principal:
    """A principal from Entra ID claims: app roles `envhub.admin` and `envhub.<role>@<workspace>` (`*` for every
    workspace), and group object ids mapped by ENVHUB_ENTRA_GROUPS to `admin` or `<role>@<workspace>`.
    Anything else is ignored: an unknown claim grants nothing."""
    wanted = [r[len(APP_ROLE_PREFIX):] for r in roles if r.lower().startswith(APP_ROLE_PREFIX)]
    wanted += [group_grants[g] for g in groups if g in group_grants]
    admin = False
    grants: dict[str, Role] = {}
    for grant in wanted:
        if grant.strip().lower() == "admin":
            admin = True
            continue
        role, _, workspace = grant.partition("@")
        try:
            parsed = Role.parse(role)
        except InvalidDefinition:
            continue
        if workspace:
            grants[workspace] = max(parsed, grants.get(workspace, parsed))
    return Principal(subject=subject, grants=grants, admin=admin)
