"""Which tenant a caller may address. Phase 1: only its own; cross-tenant sharing will be an
explicit policy decision made by the access service, never a default here."""

from __future__ import annotations

from services.platform.errors import PermissionDenied
from services.platform.principal import Principal


def require_own_tenant(caller: Principal, tenant: str) -> None:
    if caller.tenant is None:
        raise PermissionDenied(
            "UNKNOWN_ORGANISATION",
            "the caller's organisation is not part of any tenant",
        )
    if caller.tenant != tenant:
        raise PermissionDenied(
            "TENANT_MISMATCH",
            "the request's tenant is not the caller's tenant",
            {"caller_tenant": caller.tenant},
        )
