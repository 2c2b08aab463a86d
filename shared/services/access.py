"""Who may do what: bearer tokens issued and revoked, roles checked per workspace, and the audit log."""

from __future__ import annotations

import hmac
import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from shared.domain.access import (
    ANY_WORKSPACE,
    AuditEntry,
    Principal,
    Role,
    TokenRecord,
    check_grant,
    new_token,
    token_hash,
    token_id,
)
from shared.domain.errors import Forbidden, NotFound, Unauthenticated
from shared.ports import AuditLog, Page, TokenStore
from shared.services.paging import page_of

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def require(principal: Principal, workspace: str, role: Role) -> None:
    """Pass when the caller holds `role` in `workspace`. A caller with no role there learns nothing: the same 404
    as for something that does not exist; one who may look but not act gets a 403."""
    held = principal.role_in(workspace)
    if held is None:
        raise NotFound(f"workspace '{workspace}' has nothing by that name")
    if held < role:
        raise Forbidden(f"this needs the {role.label} role in workspace '{workspace}'; you are {held.label}")


def require_admin(principal: Principal) -> None:
    """Pass for an admin (the curated catalog, patch scans, tokens of any workspace)."""
    if not principal.admin:
        raise Forbidden("this needs an admin")


class AccessService:
    """Tokens and audit entries; `authenticate` runs on every request but health."""

    def __init__(self, tokens: TokenStore, audit: AuditLog, *, clock: Callable[[], datetime] = _now) -> None:
        self.tokens = tokens
        self.audit = audit
        self.clock = clock

    def authenticate(self, bearer: str) -> Principal:
        """The caller a bearer token speaks for; Unauthenticated for an unknown, malformed or revoked one."""
        digest = token_hash(bearer)
        record = self.tokens.get(token_id(digest))
        if record is None or not hmac.compare_digest(record.hash, digest) or record.revoked_at is not None:
            raise Unauthenticated("the bearer token is unknown or revoked")
        return record.principal()

    def issue(self, by: Principal, *, workspace: str | None, role: str | None, admin: bool = False,
              label: str = "") -> tuple[str, TokenRecord]:
        """A new token (returned once, stored hashed). Admins issue any; an owner issues tokens of its workspace."""
        workspace, parsed = check_grant(workspace, role, admin=admin)
        if admin or workspace == ANY_WORKSPACE:
            require_admin(by)
        else:
            assert workspace is not None
            require(by, workspace, Role.OWNER)
        secret = new_token()
        digest = token_hash(secret)
        record = TokenRecord(id=token_id(digest), hash=digest, workspace=workspace, role=parsed, admin=admin,
                             label=label[:200], created_at=self.clock(), created_by=by.subject)
        self.tokens.add(record)
        return secret, record

    def list_tokens(self, by: Principal, workspace: str | None) -> list[TokenRecord]:
        """Tokens of a workspace its owner may see; every token for an admin."""
        if workspace is None:
            require_admin(by)
        else:
            require(by, workspace, Role.OWNER)
        return self.tokens.list_tokens(workspace)

    def revoke(self, by: Principal, token: str) -> TokenRecord:
        """Revoke a token by id: an admin any, an owner those of its workspace."""
        record = self.tokens.get(token)
        if record is None or not (by.admin or (record.workspace not in (None, ANY_WORKSPACE)
                                              and by.role_in(record.workspace or "") == Role.OWNER)):
            raise NotFound(f"no token '{token}' you may revoke")
        revoked = self.tokens.revoke(token, self.clock())
        assert revoked is not None  # tokens are revoked, never deleted
        return revoked

    def admin_token(self, path: Path) -> str:
        """The admin token kept in `path` (mode 0600), issued on first start or when the one there no longer
        works (a wiped store, a revoked token)."""
        if path.is_file():
            kept = path.read_text().strip()
            try:
                if self.authenticate(kept).admin:
                    return kept
            except Unauthenticated:
                log.warning("the admin token in %s is unknown or revoked: issuing a new one", path.name)
        system = Principal(subject="envhub", admin=True)
        secret, _ = self.issue(system, workspace=None, role=None, admin=True, label="admin (envhub serve)")
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(path.name + ".new")
        descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secret + "\n")
        os.chmod(staged, 0o600)  # an existing file keeps its mode through O_CREAT
        os.replace(staged, path)
        return secret

    def record(self, *, workspace: str, who: str, action: str, status: int, request_id: str) -> None:
        """Append one change to the audit log."""
        self.audit.append(AuditEntry(id=uuid.uuid4().hex, workspace=workspace, at=self.clock(), who=who,
                                     action=action, status=status, request_id=request_id))

    def entries(self, by: Principal, workspace: str, *, top: int, cursor: str | None) -> Page[AuditEntry]:
        """A workspace's audit log, newest first: owners only."""
        require(by, workspace, Role.OWNER)
        return page_of(lambda: self.audit.entries(workspace, top=top, cursor=cursor))
