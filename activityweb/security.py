"""Defences that apply to every request: security headers, CSRF, rate limits.

Credentials and tenant scoping live in auth.py; this module makes the
browser and the network side safe by default.
"""
from __future__ import annotations

from flask import current_app, request
from flask_limiter.util import get_remote_address

from .auth import bearer_secret, hash_token
from .extensions import csrf, limiter

# No inline script or style anywhere (templates use static files only), no
# framing, and sockets and fetches only to this origin ('self' covers ws:/wss:
# of the same host in CSP Level 3 browsers).
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def set_security_headers(response):
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config.get("ENV_NAME") == "production":
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def credential_key() -> str:
    """Rate-limit API calls per token (a hash prefix, never the secret), and
    calls without one per client address."""
    secret = bearer_secret()
    if secret:
        return "token:" + hash_token(secret)[:24]
    return "ip:" + get_remote_address()


def login_key() -> str:
    """Sign-in attempts count per address and per account, so neither many
    accounts from one address nor one account from many addresses is free."""
    email = (request.form.get("email") or "").strip().lower()[:254]
    return f"login:{get_remote_address()}:{email}"


def api_limit() -> str:
    return current_app.config["RATELIMIT_API"]


def login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def init_app(app, api_blueprint, socket_blueprints) -> None:
    app.after_request(set_security_headers)
    csrf.init_app(app)
    # Bearer tokens are not sent by browsers on their own, so the API and
    # the token-authenticated streams need no CSRF token.
    csrf.exempt(api_blueprint)
    for blueprint in socket_blueprints:
        csrf.exempt(blueprint)
    limiter.init_app(app)
