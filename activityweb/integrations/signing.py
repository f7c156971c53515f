"""Shared secrets of signed producers, and finding whose secret signed a request.

A webhook carries no bearer token, and its body or query string must not be
trusted to name a tenant. So the signature decides: it is checked against
every tenant's secret for that integration (constant-time compares), and the
tenant whose secret verifies it is the one the request is for. If none does,
the answer is a 401 and nothing is stored. That costs one HMAC per tenant with
a secret for the integration, which is small for the tens of tenants one
instance serves; `set_secret` refuses a secret another tenant already uses, so
at most one tenant can verify a request.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import Callable

from ..auth import Principal
from ..errors import ApiError
from ..models import Tenant
from ..schemas import whole_number
from ..store import accounts

INTEGRATIONS = ("github", "hubspot", "salesforce", "webhook")
# How far a signed timestamp may be from our clock: old enough to be a replay,
# or from a clock too far off to trust.
TOLERANCE_SECONDS = 300
MIN_SECRET_LENGTH = 16
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class SecretError(ValueError):
    """A secret or name that cannot be stored; the message says why."""


def set_secret(tenant: Tenant, integration: str, name: str = "", secret: str | None = None) -> str:
    """Store (or replace) a tenant's secret for an integration; returns the secret.

    Without `secret` a random one is made. HubSpot signs with the client
    secret of the tenant's HubSpot app, so for it the secret must be given.
    """
    if integration not in INTEGRATIONS:
        raise SecretError(f"integration is one of {', '.join(INTEGRATIONS)}; got {integration!r}")
    if integration == "webhook" and not _NAME.match(name):
        raise SecretError("a webhook needs --name: lower-case letters, digits, '-' and '_', at most 64")
    if integration != "webhook" and name:
        raise SecretError("only webhook secrets have a name")
    if secret is None:
        if integration == "hubspot":
            raise SecretError("HubSpot signs with your app's client secret: pass it with --secret")
        secret = secrets.token_urlsafe(32)
    if not MIN_SECRET_LENGTH <= len(secret) <= 200 or secret != secret.strip():
        raise SecretError(f"a secret is {MIN_SECRET_LENGTH} to 200 characters without surrounding spaces")
    holders = accounts.secret_holders(integration, name)
    if any(row.id != tenant.id and hmac.compare_digest(row.secret, secret) for row in holders):
        raise SecretError("another tenant uses this secret for this integration; requests could not be told apart")
    accounts.save_secret(tenant.id, integration, name, secret)
    return secret


def find_signer(integration: str, name: str, signed_with: Callable[[str], bool]) -> Principal:
    """The tenant whose secret `signed_with` accepts; a 401 ApiError if none does.

    Every candidate is checked (no early exit), each with a constant-time
    compare inside `signed_with`.
    """
    signer = None
    for row in accounts.secret_holders(integration, name):
        if signed_with(row.secret) and signer is None:
            signer = Principal(row.id, row.slug, frozenset({"ingest"}))
    if signer is None:
        raise invalid_signature("The signature does not match any secret configured for this integration.")
    return signer


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def same(expected: bytes | str, given: bytes | str) -> bool:
    """Constant-time equality of two signatures (text is compared as UTF-8)."""
    if isinstance(expected, str):
        expected = expected.encode()
    if isinstance(given, str):
        given = given.encode()
    return hmac.compare_digest(expected, given)


def require_fresh(timestamp: str | None, *, unit_seconds: float = 1.0) -> int:
    """A signed timestamp as an int, if it is within TOLERANCE_SECONDS of now.

    `unit_seconds` is the length of one unit of the timestamp (HubSpot sends
    milliseconds). Raises a 401 ApiError when missing, malformed or stale.
    """
    value = whole_number(timestamp or "", max_digits=16)
    if value is None:
        raise invalid_signature("The signature timestamp is missing or not a whole number.")
    if abs(time.time() - value * unit_seconds) > TOLERANCE_SECONDS:
        raise invalid_signature(
            f"The signature timestamp is more than {TOLERANCE_SECONDS // 60} minutes from our clock; "
            "a replayed or delayed request is refused."
        )
    return value


def invalid_signature(message: str) -> ApiError:
    return ApiError(401, "invalid_signature", message)
