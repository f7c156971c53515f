"""Signing in and out, switching tenant, and managing the tenant's API tokens."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for

from .. import auth, store
from ..extensions import limiter
from ..security import (
    login_account_key,
    login_account_limit,
    login_address_key,
    login_address_limit,
    login_key,
    login_limit,
)

bp = Blueprint("account", __name__)


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to another host."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
    return url_for("web.feed")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(login_limit, key_func=login_key, methods=["POST"])
@limiter.limit(login_address_limit, key_func=login_address_key, methods=["POST"])
@limiter.limit(login_account_limit, key_func=login_account_key, methods=["POST"])
def login():
    next_url = safe_next(request.values.get("next"))
    if request.method == "POST":
        user = auth.check_password(request.form.get("email", ""), request.form.get("password", ""))
        if user is not None and auth.sign_in(user):
            return redirect(next_url)
        return render_template("account/login.html", next_url=next_url, email=request.form.get("email", ""),
                               error="That email and password do not match an account with a tenant."), 401
    return render_template("account/login.html", next_url=next_url, email="", error=None)


@bp.post("/logout")
def logout():
    auth.sign_out()
    return redirect(url_for("account.login"))


@bp.post("/tenant")
def switch_tenant():
    principal = auth.web_principal()
    if principal.local or not auth.switch_tenant(principal, request.form.get("tenant_id", type=int)):
        abort(403, "You are not a member of that tenant.")
    return redirect(url_for("web.feed"))


@bp.get("/settings/tokens")
def tokens():
    principal = auth.web_principal()
    auth.require_admin(principal)
    return render_template("settings/tokens.html", tokens=store.list_tokens(principal.tenant_id),
                           new_secret=None, scopes=auth.SCOPES)


@bp.post("/settings/tokens")
def create_token():
    principal = auth.web_principal()
    auth.require_admin(principal)
    name = request.form.get("name", "").strip()[:200] or "unnamed"
    try:
        token, secret = auth.create_token(store.tenant_by_id(principal.tenant_id), name, request.form.getlist("scopes"))
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect(url_for("account.tokens"))
    # Shown once, in this response only; the database keeps the hash.
    response = render_template("settings/tokens.html", tokens=store.list_tokens(principal.tenant_id),
                               new_secret=secret, new_token=token, scopes=auth.SCOPES)
    return response, 201, {"Cache-Control": "no-store"}


@bp.post("/settings/tokens/<int(max=2147483647):token_id>/revoke")  # an id beyond INTEGER is no token
def revoke_token(token_id: int):
    principal = auth.web_principal()
    auth.require_admin(principal)
    if auth.revoke_token(token_id, tenant_id=principal.tenant_id) is None:
        abort(404, "No such token in this tenant.")
    flash("Token revoked.", "ok")
    return redirect(url_for("account.tokens"))
