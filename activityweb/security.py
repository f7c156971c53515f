"""Defences that apply to every request: security headers, CSRF, rate limits.

Credentials and tenant scoping live in auth.py; this module makes the
browser and the network side safe by default.
"""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import current_app, request
from flask_limiter.util import get_remote_address

from .auth import allowed_origins, bearer_secret, hash_token
from .config import is_production
from .errors import ApiError
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
    if is_production(current_app.config):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


def credential_key() -> str:
    """Rate-limit API calls per token (a hash prefix, never the secret), and
    calls without one per client address."""
    secret = bearer_secret()
    if secret:
        return "token:" + hash_token(secret)[:24]
    return "ip:" + get_remote_address()


def _login_email() -> str:
    return (request.form.get("email") or "").strip().lower()[:254]


def login_address_key() -> str:
    """Sign-in attempts from one address, whatever the account: one address
    cannot try many accounts."""
    return f"login-address:{get_remote_address()}"


def login_account_key() -> str:
    """Attempts on one account, whatever the address: many addresses cannot
    share the guessing of one password."""
    return f"login-account:{_login_email()}"


def login_key() -> str:
    """Attempts of one address on one account: the tightest of the three."""
    return f"login:{get_remote_address()}:{_login_email()}"


def api_limit() -> str:
    return current_app.config["RATELIMIT_API"]


def login_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN"]


def login_address_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN_ADDRESS"]


def login_account_limit() -> str:
    return current_app.config["RATELIMIT_LOGIN_ACCOUNT"]


# ------------------------------------------------------- hosts and origins

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# A load balancer probes by address, whatever our name; they reveal nothing.
PROBES = frozenset({"/healthz", "/readyz"})


def hostname(host: str) -> str:
    """A Host header without its port, lower case: `[::1]:5000` -> `[::1]`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(config) -> set[str]:
    hosts = {hostname(h) for h in config.get("ALLOWED_HOSTS") or ()}
    if config.get("PUBLIC_URL"):
        hosts.add(hostname(urlsplit(config["PUBLIC_URL"]).netloc))
    return hosts


def is_loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address((address or "").strip("[]")).is_loopback
    except ValueError:
        return False


def check_request_origin() -> None:
    """Before every request: the Host must be one we serve (a DNS-rebinding
    page comes in under its own name); in local mode, the client must be on
    this machine; and a browser's state-changing request must come from a page
    of ours (Origin), whatever its credentials."""
    config = current_app.config
    if "\x00" in request.path:  # no id of ours holds NUL, and PostgreSQL text cannot
        raise ApiError(404, "not_found", "No such resource.")
    refuse_nul_in_fields()
    if request.path in PROBES:
        return
    if hostname(request.host) not in allowed_hosts(config):
        raise ApiError(400, "unknown_host", f"This server does not answer to {hostname(request.host)!r}; "
                       "add it to ALLOWED_HOSTS.")
    if config.get("LOCAL_MODE") and not is_loopback(request.remote_addr):
        raise ApiError(403, "forbidden", "Local mode answers only this machine.")
    origin = request.headers.get("Origin")
    if request.method not in SAFE_METHODS and origin is not None:
        if origin.rstrip("/") not in allowed_origins():
            raise ApiError(403, "cross_origin", f"Origin {origin!r} may not send requests here.")


def refuse_nul_in_fields() -> None:
    """No query or form value of ours may hold NUL, which PostgreSQL text cannot
    store or compare (a sign-in email or a token name with one was a 500)."""
    for values in (request.args, request.form if request.mimetype in FORM_TYPES else {}):
        for key, value in values.items(multi=True) if values else ():
            if "\x00" in key or "\x00" in value:
                raise ApiError(400, "invalid_parameter", f"{key.replace(chr(0), '')!r} must not contain NUL.",
                               [{"field": key.replace("\x00", ""), "message": "must not contain the NUL character"}])


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
JSON_TYPES = ("application/json",)
# OTLP/HTTP takes protobuf as well: not a type a form or a CORS "simple
# request" can send, so the same cross-site argument holds.
OTLP_TYPES = ("application/json", "application/x-protobuf", "application/protobuf")


def require_json_body() -> None:
    """A JSON endpoint takes a body only as `application/json` (or `+json`):
    a form post from another site is a "simple request" that needs no CORS
    preflight, and must not be read as an event."""
    if request.method in SAFE_METHODS or not (request.content_length or request.headers.get("Transfer-Encoding")):
        return
    mimetype = request.mimetype or ""
    if request.path.startswith("/api/v1/otlp/"):
        if mimetype not in OTLP_TYPES:
            raise ApiError(415, "unsupported_media_type", "OTLP/HTTP bodies are application/x-protobuf or "
                           f"application/json, not {mimetype or 'none'!r}.",
                           headers={"Accept-Post": ", ".join(OTLP_TYPES)})
        return
    if mimetype not in JSON_TYPES and not mimetype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type", f"Send the body as application/json, not {mimetype or 'none'!r}.",
                       headers={"Accept-Post": "application/json"})


def init_app(app, api_blueprint, socket_blueprints) -> None:
    app.before_request(check_request_origin)

    @app.before_request
    def api_takes_json():
        if request.blueprint == api_blueprint.name:
            require_json_body()

    app.after_request(set_security_headers)
    csrf.init_app(app)
    # Bearer tokens are not sent by browsers on their own, so the API and
    # the token-authenticated streams need no CSRF token.
    csrf.exempt(api_blueprint)
    for blueprint in socket_blueprints:
        csrf.exempt(blueprint)
    limiter.init_app(app)
