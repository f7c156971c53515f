"""One set of error handlers: JSON under /api (and for JSON clients), a page elsewhere.

Every API error has the shape `{"error": {"code", "message", "details"}}`.
Nothing a client sends should reach the 500 handler; if something does, the
client gets a JSON 500 without a stack trace and the log gets the trace.
"""
from __future__ import annotations

import logging

from flask import jsonify, make_response, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from .auth import SignInRequired
from .schemas import ApiError

log = logging.getLogger(__name__)

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
        response = make_response(render_template("error.html", status=status, code=code, message=message,
                                                  details=details or []))
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
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")
