"""Errors, and the one set of handlers that answers them: JSON under /api (and
for JSON clients), a page elsewhere.

Below the edge, code raises what went wrong in its own terms: `InvalidQuery`
(a filter, cursor or bucket that cannot be answered) and `SignInRequired`.
The edge raises `ApiError` for what only HTTP has words for (a missing token,
a body that is not JSON). The handlers here turn each into an answer.

Every API error has the shape `{"error": {"code", "message", "details"}}`.
Nothing a client sends should reach the 500 handler; if something does, the
client gets a JSON 500 without a stack trace and the log gets the trace.
"""
from __future__ import annotations

import logging

import sqlalchemy.exc
from flask import g, jsonify, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# How long a client should wait before trying again when the database is away.
UNAVAILABLE_RETRY_AFTER = 2
# What a database that is away (down, restarting, unreachable, its pool
# exhausted) raises. A fault of ours (bad SQL, a constraint) raises other
# DBAPIError subclasses and stays a 500.
DATABASE_AWAY = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
                 sqlalchemy.exc.DisconnectionError)


def database_away(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (rather than that our query is wrong)."""
    if isinstance(exc, DATABASE_AWAY):
        return True
    return isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated


class InvalidQuery(ValueError):
    """A parameter of a read that cannot be answered: which one, and why.

    Raised by the filter's parser, the cursor's decoder and the store alike;
    answered as a 400 that names the parameter.
    """

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    @property
    def message(self) -> str:
        return f"{self.field}: {self.reason}"

    @property
    def details(self) -> list[dict]:
        return [{"field": self.field, "message": self.reason}]


class SignInRequired(Exception):
    """A dashboard request without a signed-in user (and not in local mode)."""


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message", "details"}}`."""

    def __init__(self, status: int, code: str, message: str, details: list | None = None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def invalid_body(message: str, detail: str, field: str = "body") -> ApiError:
    """A 422 for a body (or one field of it) that is not what the endpoint takes."""
    return ApiError(422, "validation_error", message, [{"field": field, "message": detail}])


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


def found(value, message: str):
    """`value`, unless it is None (a lookup in the tenant found nothing): then a 404 saying `message`."""
    if value is None:
        raise not_found(message)
    return value


_CODES = {
    400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "body_too_large",
    415: "unsupported_media_type", 429: "rate_limited", 500: "internal_error", 503: "unavailable",
}


def wants_json() -> bool:
    if request.path.startswith("/api/") or request.path in ("/healthz", "/readyz"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and not request.accept_mimetypes["text/html"]


def error_response(status: int, code: str, message: str, details=None, headers=None):
    if wants_json():
        response = jsonify({"error": {"code": code, "message": message, "details": details or []}})
    else:
        g.error_page = True  # no header figures: the database may be what failed (web/context.py)
        response = make_response(render_template("error.html", status=status, code=code, message=message,
                                                  details=details or [],
                                                  retry_after=(headers or {}).get("Retry-After")))
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app) -> None:
    @app.errorhandler(SignInRequired)
    def handle_sign_in_required(exc):
        """Pages go to the sign-in page and come back; htmx follows HX-Redirect;
        sockets and JSON clients get a plain 401."""
        login = url_for("account.login", next=request.full_path.rstrip("?"))
        if request.headers.get("HX-Request"):
            response = make_response("", 401)
            response.headers["HX-Redirect"] = login
            return response
        if wants_json() or request.headers.get("Upgrade", "").lower() == "websocket":
            return error_response(401, "unauthenticated", "Sign in first.")
        return redirect(login)

    @app.errorhandler(ApiError)
    def handle_api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(InvalidQuery)
    def handle_invalid_query(exc: InvalidQuery):
        return error_response(400, "invalid_parameter", exc.message, exc.details)

    def handle_database_away(exc: Exception):
        """A 503 the client may retry: nothing was stored (the transaction did not commit)."""
        log.warning("database unavailable on %s %s: %s", request.method, request.path,
                    str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__)
        from . import store  # here: the store imports this module

        try:
            store.release()  # roll back and give the broken connection to the pool, which replaces it
        except Exception:
            pass
        g.database_away = True
        return error_response(503, "unavailable", "The database is unavailable; nothing was stored or changed. "
                              f"Try again in {UNAVAILABLE_RETRY_AFTER} seconds.",
                              headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER)})

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH") or 0
            message = f"The request body is over {limit // 1024} KiB."
        headers = dict(exc.get_headers()) if status in (405, 429) else {}
        headers.pop("Content-Type", None)
        return error_response(status, _CODES.get(status, "http_error"), message, headers=headers)

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception):
        if database_away(exc):
            return handle_database_away(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
