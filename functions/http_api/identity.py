"""Who is calling: an envhub bearer token, or the Entra ID principal App Service Authentication passes on."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.bootstrap import Services
from shared.domain.access import Principal, principal_from_claims
from shared.domain.errors import Unauthenticated

# Declares the scheme in the OpenAPI document (Swagger UI's Authorize button); the check is envhub's own.
bearer = HTTPBearer(auto_error=False, description="an envhub token (`envhub token create`), or in Azure an "
                    "Entra ID access token checked by App Service Authentication")
EASY_AUTH_HEADER = "x-ms-client-principal"
ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
NAME_CLAIMS = ("preferred_username", "name", "http://schemas.microsoft.com/identity/claims/objectidentifier")


def identify(request: Request, services: Services, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller, per ENVHUB_AUTH; Unauthenticated (401) when there is none."""
    if services.settings.auth == "entra":
        return entra_principal(request.headers.get(EASY_AUTH_HEADER), services.settings.entra_groups)
    if credentials is None:
        raise Unauthenticated("this needs a bearer token: `Authorization: Bearer <token>` (see `envhub token`)")
    return services.access.authenticate(credentials.credentials)


def entra_principal(header: str | None, groups: Mapping[str, str]) -> Principal:
    """The principal in App Service Authentication's X-MS-CLIENT-PRINCIPAL header (base64 JSON of the token's
    claims). App Service strips this header from incoming requests, so in `entra` mode it can be trusted; in
    `tokens` mode it is never read."""
    if not header:
        raise Unauthenticated("no Entra ID principal: App Service Authentication must sign the caller in")
    try:
        document = json.loads(base64.b64decode(header, validate=True))
        claims = [(str(c["typ"]), str(c["val"])) for c in document.get("claims", [])]
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
        raise Unauthenticated("the X-MS-CLIENT-PRINCIPAL header is malformed") from None
    role_types = {*ROLE_CLAIMS, str(document.get("role_typ", "roles"))}
    name_types = (str(document.get("name_typ", "")), *NAME_CLAIMS)
    subject = next((value for kind in name_types for typ, value in claims if typ == kind and value), "entra")
    return principal_from_claims(subject=f"entra:{subject}",
                                 roles=[v for t, v in claims if t in role_types],
                                 groups=[v for t, v in claims if t == "groups"], group_grants=groups)
