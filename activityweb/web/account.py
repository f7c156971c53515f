"""Signing in and out, switching tenant, and managing the tenant's API tokens."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, flash, make_response, redirect, render_template, request, session, url_for

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
    """The tenant's tokens, and once after creating one its secret.

    Post/redirect/get: the create redirects here, so a reload never makes a
    second token. The secret waits server-side (`store.hold_secret`) under a
    random key that only this session holds, and is deleted as this page
    reads it; the session cookie, which the browser keeps and anyone with
    the cookie can read, never carries the secret itself.
    """
    principal = auth.web_principal()
    auth.require_admin(principal)
    new_secret = new_token_id = None
    key = session.pop("token_reveal", None)
    if key:
        taken = store.take_secret(principal.tenant_id, key)
        if taken:
            new_token_id, new_secret = taken
    listed = store.list_tokens(principal.tenant_id)
    response = make_response(render_template(
        "settings/tokens.html", tokens=listed, new_secret=new_secret,
        new_token=next((t for t in listed if t.id == new_token_id), None), scopes=auth.SCOPES))
    response.headers["Cache-Control"] = "no-store"  # the secret must not stay in a cache or in back/forward
    return response


@bp.post("/settings/tokens")
def create_token():
    principal = auth.web_principal()
    auth.require_admin(principal)
    name = request.form.get("name", "").strip()[:200] or "unnamed"
    try:
        token, secret = auth.create_token(store.tenant_by_id(principal.tenant_id), name, request.form.getlist("scopes"))
    except ValueError as exc:
        flash(str(exc), "error")
        return redirect(url_for("account.tokens"), 303)
    session["token_reveal"] = store.hold_secret(principal.tenant_id, token.id, secret)
    return redirect(url_for("account.tokens"), 303)


@bp.post("/settings/tokens/<id:token_id>/revoke")  # an id beyond INTEGER is no token
def revoke_token(token_id: int):
    principal = auth.web_principal()
    auth.require_admin(principal)
    if auth.revoke_token(token_id, tenant_id=principal.tenant_id) is None:
        abort(404, "No such token in this tenant.")
    flash("Token revoked.", "ok")
    return redirect(url_for("account.tokens"))
