"""Access-token verification: signature (RS256/ES256 only) against a JWKS, issuer, audience, expiry.

The JWKS comes from a file (re-read when it changes) or an http(s) URL (re-fetched when a token names
a key id we do not know, at most every `refresh_interval` seconds)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import time
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from services.platform.errors import Unauthenticated, Unavailable
from services.platform.identifiers import organisation_number_problem, person_number_problem
from services.platform.principal import (
    CITIZEN_SCOPE,
    CLAIM_AUTHORIZATION_DETAILS,
    CLAIM_CLIENT_ID,
    CLAIM_HPR_NUMBER,
    CLAIM_NAME,
    CLAIM_ORGNR_CHILD,
    CLAIM_ORGNR_PARENT,
    CLAIM_PERSON_ID,
    Attestation,
    Principal,
)
from services.platform.tenants import TenantTable

ALLOWED_ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_BYTES = 8 * 1024  # HelseID tokens with an attestation are a few KiB
CLOCK_LEEWAY_SECONDS = 30
# Verified tokens remembered (by SHA-256), and for how long at most.
VERIFIED_CACHE_SIZE = 4096
VERIFIED_CACHE_SECONDS = 60.0

log = logging.getLogger(__name__)


class JwksSource:
    """A JWKS from a file path or an http(s) URL."""

    def __init__(self, location: str, refresh_interval: float = 60.0) -> None:
        self.location = location
        self.refresh_interval = refresh_interval
        self._keys: KeySet | None = None
        self._loaded_at = 0.0
        self._file_mtime: float | None = None
        self._lock = asyncio.Lock()

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    async def keys(self, key_id: str | None) -> KeySet:
        async with self._lock:
            if self._keys is None or self._should_reload(key_id):
                self._keys = KeySet.import_key_set(await self._fetch())
                self._loaded_at = time.monotonic()
            return self._keys

    def _should_reload(self, key_id: str | None) -> bool:
        known_ids = {key.kid for key in self._keys.keys} if self._keys is not None else set()
        unknown_key = key_id is not None and key_id not in known_ids
        since_load = time.monotonic() - self._loaded_at
        if self.is_url:
            return unknown_key and since_load > self.refresh_interval
        # A file is cheap to check, but not on every call: when a token names a key we do not know
        # (a rotation), or at most once a second.
        if not unknown_key and since_load < 1.0:
            return False
        self._loaded_at = time.monotonic()
        return Path(self.location).stat().st_mtime != self._file_mtime

    async def _fetch(self) -> dict[str, Any]:
        if self.is_url:
            return await asyncio.to_thread(_fetch_url, self.location)
        self._file_mtime, keys = await asyncio.to_thread(_read_file, Path(self.location))
        return keys


def _read_file(path: Path) -> tuple[float, dict[str, Any]]:
    return path.stat().st_mtime, json.loads(path.read_text())


def _fetch_url(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


class TokenVerifier:
    def __init__(self, jwks: JwksSource, *, issuer: str, audience: str, tenants: TenantTable) -> None:
        self.jwks = jwks
        self.tenants = tenants
        self.claims_registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )
        self._verified: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthenticated("TOKEN_TOO_LARGE", "access token is too large")
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        cached = self._verified.get(digest)
        if cached is not None:
            principal, cached_until = cached
            if now <= cached_until:
                self._verified.move_to_end(digest)
                return principal
            del self._verified[digest]
        principal = await self._verify(token)
        # Every hop of a call verifies the same token: remember a good one for a short while, never
        # past its expiry, so a key withdrawn from the JWKS stops working within VERIFIED_CACHE_SECONDS.
        expires = (principal.expires_at or now) + CLOCK_LEEWAY_SECONDS
        self._verified[digest] = (principal, min(expires, now + VERIFIED_CACHE_SECONDS))
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = _unverified_header(token)
            keys = await self.jwks.keys(header.get("kid"))
            decoded = jwt.decode(token, keys, algorithms=list(ALLOWED_ALGORITHMS))
            self.claims_registry.validate(decoded.claims)
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise Unauthenticated("INVALID_TOKEN", f"access token rejected: {_describe(error)}") from None
        except OSError as error:
            log.warning("cannot load JWKS from %s: %s", self.jwks.location, error)
            raise Unavailable("token signing keys cannot be loaded; retry later") from None
        return self._principal(decoded.claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        client_id = _claim(claims, CLAIM_CLIENT_ID, _CLIENT_ID, required=True)
        organisation = _claim(claims, CLAIM_ORGNR_PARENT, organisation_number_problem, required=True)
        scopes = claims.get("scope", "")
        scope_list = scopes.split() if isinstance(scopes, str) else scopes if isinstance(scopes, list) else []
        return Principal(
            subject=str(claims.get("sub", client_id))[:_TEXT_MAX],
            client_id=client_id,
            organisation_number=organisation,
            unit_organisation_number=_claim(claims, CLAIM_ORGNR_CHILD, organisation_number_problem),
            tenant=self.tenants.tenant_of(organisation),
            hpr_number=_claim(claims, CLAIM_HPR_NUMBER, _HPR_NUMBER),
            person_id=_claim(claims, CLAIM_PERSON_ID, person_number_problem),
            is_citizen=CITIZEN_SCOPE in scope_list,
            attestation=Attestation.from_authorization_details(claims.get(CLAIM_AUTHORIZATION_DETAILS)),
            token_id=_claim(claims, "jti", _TEXT),
            expires_at=float(claims["exp"]),
            name=_claim(claims, CLAIM_NAME, _TEXT),
            scopes=frozenset(scope for scope in scope_list if isinstance(scope, str)),
        )


def _unverified_header(token: str) -> dict[str, Any]:
    encoded = token.split(".", 1)[0]
    decoded = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    if not isinstance(decoded, dict):
        raise ValueError("token header is not a JSON object")
    return decoded


_TEXT_MAX = 200
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII: it becomes a record's source system
_HPR_NUMBER = re.compile(r"[0-9]{1,9}")
_TEXT = re.compile(r"[^\x00-\x1f\x7f\ud800-\udfff]{1,200}")


def _claim(
    claims: dict[str, Any],
    name: str,
    check: re.Pattern[str] | Callable[[str], str | None],
    *,
    required: bool = False,
) -> Any:
    """A well-formed string claim, or None when it is optional and absent; anything else rejects the token."""
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, str):
        problem = check.fullmatch(value) is None if isinstance(check, re.Pattern) else check(value) is not None
        if not problem:
            return value
    raise Unauthenticated("INVALID_TOKEN", f"access token rejected: claim {name} is missing or malformed")


def _describe(error: Exception) -> str:
    return getattr(error, "description", None) or getattr(error, "error", None) or type(error).__name__
