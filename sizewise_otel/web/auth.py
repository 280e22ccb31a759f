"""Role-based access for the monitoring endpoints, with an audit line per access.

Keys come from SIZEWISE_API_KEYS / SIZEWISE_API_KEYS_FILE (``role:key``); clients send
``Authorization: Bearer KEY``. Roles: viewer < admin. Keys are compared in constant time and never
logged: the audit log names a key by a short hash (its "key id").
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from fastapi import HTTPException, Request

from sizewise_otel.settings import Settings

ROLES = {"viewer": 1, "admin": 2}
audit_log = structlog.get_logger("sizewise.audit")


def key_id(key: str) -> str:
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Principal:
    role: str | None  # None: anonymous
    key_id: str | None

    @property
    def authenticated(self) -> bool:
        return self.role is not None

    def allows(self, role: str) -> bool:
        return self.role is not None and ROLES[self.role] >= ROLES[role]


class KeyRing:
    def __init__(self, settings: Settings) -> None:
        self._keys = [(k.encode(), role) for k, role in settings.api_keys().items()]
        self.metrics_token = settings.sizewise_metrics_token.encode()

    @property
    def configured(self) -> bool:
        return bool(self._keys)

    def identify(self, request: Request) -> Principal:
        token = bearer(request)
        if token is None:
            return Principal(None, None)
        found: str | None = None
        # Compare against every key, always: timing says nothing about which key nearly matched.
        for key, role in self._keys:
            if hmac.compare_digest(key, token.encode()):
                found = role
        return Principal(found, key_id(token)) if found else Principal(None, key_id(token))

    def metrics_allowed(self, request: Request) -> bool:
        if not self.metrics_token:
            return True
        token = bearer(request)
        return token is not None and hmac.compare_digest(self.metrics_token, token.encode())


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def keyring_of(request: Request) -> KeyRing:
    return request.app.state.sizewise_keyring


def require(role: str, *, audit: bool = True) -> Callable[[Request], Principal]:
    """FastAPI dependency: 401 without valid credentials, 403 with too small a role.

    With no keys configured at all (the embedded demo on loopback) access is open and the
    start-up warning says so; the audit line is still written.
    """

    def dependency(request: Request) -> Principal:
        ring = keyring_of(request)
        principal = ring.identify(request) if ring.configured else Principal("admin", "open-access")
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        if not principal.authenticated:
            _audit(principal, request, path, 401)
            raise HTTPException(401, detail="missing or invalid API key",
                                headers={"WWW-Authenticate": "Bearer"})
        if not principal.allows(role):
            _audit(principal, request, path, 403)
            raise HTTPException(403, detail=f"role {principal.role!r} may not do this; needs {role!r}")
        if audit:
            _audit(principal, request, path, 200)
        return principal

    return dependency


def optional_principal(request: Request) -> Principal:
    ring = keyring_of(request)
    return ring.identify(request) if ring.configured else Principal("admin", "open-access")


def _audit(principal: Principal, request: Request, route: str, result: int) -> None:
    audit_log.info("access", key_id=principal.key_id, role=principal.role, method=request.method,
                   route=route, result=result)
