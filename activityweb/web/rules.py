"""/settings/rules: rules, channels, firings and the delivery log, for a tenant's admins.

Forms post and redirect back (flashing what went wrong, field by field);
a channel's "test" and "send a test event" answer with a partial htmx swaps in.
"""
from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from .. import auth
from ..errors import ApiError
from ..rules import channels as channel_kinds
from ..rules import manage
from ..rules.conditions import CONDITIONS, DIGEST_PERIODS, describe
from ..store import outbox
from ..store import rules as store_rules
from . import bp

# The form asks for minutes; the rule keeps seconds.
MINUTE_FIELDS = {"window_minutes": "window_seconds", "cooldown_minutes": "cooldown_seconds"}
NUMBER_FIELDS = {"threshold": int, "percent": float, "budget": float}


def _admin():
    principal = auth.web_principal()
    auth.require_admin(principal)
    return principal


def rule_body(form: MultiDict) -> dict:
    """The form's fields as the API's rule body (blank fields left out)."""
    body = {"name": form.get("name", ""), "filter": form.get("filter", "").strip(),
            "condition": form.get("condition", ""), "enabled": form.get("enabled", "on") == "on"}
    for name, cast in NUMBER_FIELDS.items():
        if form.get(name, "").strip():
            body[name] = _number(name, form[name], cast)
    for name, target in MINUTE_FIELDS.items():
        if form.get(name, "").strip():
            body[target] = round(_number(name, form[name], float) * 60)
    if form.get("metric", "").strip():
        body["metric"] = form["metric"].strip()
    if form.get("channel_id", "").strip():
        body["channel_id"] = _number("channel_id", form["channel_id"], int)
    return body


def _number(name: str, value: str, cast):
    try:
        return cast(value.strip())
    except ValueError:
        raise ApiError(422, "validation_error", f"{name}: is not a number",
                       [{"field": name, "message": "is not a number"}]) from None


def _flash_error(exc: ApiError) -> None:
    for detail in exc.details or [{"field": "", "message": exc.message}]:
        flash(f"{detail['field']}: {detail['message']}" if detail.get("field") else detail["message"], "error")


@bp.get("/settings/rules")
def rules_page():
    principal = _admin()
    rules = store_rules.list_rules(principal.tenant_id)
    channels = store_rules.list_channels(principal.tenant_id)
    firings = {r.id: outbox.recent_firings(principal.tenant_id, rule_id=r.id, limit=3) for r in rules}
    return render_template("settings/rules.html", rules=rules, channels=channels, firings=firings,
                           describe=describe, conditions=CONDITIONS, digest_periods=DIGEST_PERIODS,
                           kinds=channel_kinds.kinds(current_app.config), new_secret=None,
                           prefill=request.args.get("filter", ""))


@bp.post("/settings/rules")
def create_rule():
    principal = _admin()
    try:
        rule = manage.save_rule(principal.tenant_id, rule_body(request.form))
    except ApiError as exc:
        _flash_error(exc)
        return redirect(url_for("web.rules_page", filter=request.form.get("filter", "")))
    flash(f"Rule “{rule.name}” created: {describe(rule)}.", "ok")
    return redirect(url_for("web.rule_page", rule_id=rule.id))


@bp.get("/settings/rules/<id:rule_id>")
def rule_page(rule_id: int):
    principal = _admin()
    rule = store_rules.get_rule(principal.tenant_id, rule_id) or abort(404, "No such rule in this tenant.")
    channel = store_rules.get_channel(principal.tenant_id, rule.channel_id) if rule.channel_id else None
    return render_template("settings/rule.html", rule=rule, channel=channel, describe=describe,
                           firings=outbox.recent_firings(principal.tenant_id, rule_id=rule.id, limit=50))


@bp.post("/settings/rules/<id:rule_id>/delete")
def delete_rule(rule_id: int):
    principal = _admin()
    if not store_rules.delete_rule(principal.tenant_id, rule_id):
        abort(404, "No such rule in this tenant.")
    flash("Rule deleted.", "ok")
    return redirect(url_for("web.rules_page"))


@bp.post("/settings/rules/channels")
def create_channel():
    principal = _admin()
    try:
        channel, secret = manage.create_channel(principal.tenant_id, {k: request.form.get(k, "") for k in
                                                                      ("name", "kind", "target")})
    except ApiError as exc:
        _flash_error(exc)
        return redirect(url_for("web.rules_page"))
    if secret:  # shown once, in this response only
        return render_template("settings/rules_channel.html", channel=channel, log=[], new_secret=secret,
                               firings=[], pending=0), 201, {"Cache-Control": "no-store"}
    flash(f"Channel “{channel.name}” added.", "ok")
    return redirect(url_for("web.channel_page", channel_id=channel.id))


@bp.get("/settings/rules/channels/<id:channel_id>")
def channel_page(channel_id: int):
    principal = _admin()
    channel = store_rules.get_channel(principal.tenant_id, channel_id) or abort(404, "No such channel.")
    return render_template("settings/rules_channel.html", channel=channel, new_secret=None,
                           log=outbox.delivery_log(principal.tenant_id, channel.id),
                           firings=outbox.recent_firings(principal.tenant_id, channel_id=channel.id, limit=20),
                           pending=outbox.pending_count(channel.id))


@bp.post("/settings/rules/channels/<id:channel_id>/test")
def test_channel(channel_id: int):
    principal = _admin()
    channel = store_rules.get_channel(principal.tenant_id, channel_id) or abort(404, "No such channel.")
    result = manage.test_channel(principal.tenant_slug, channel)
    return render_template("settings/_rules_test_result.html", result=manage.result_json(result))


@bp.post("/settings/rules/channels/<id:channel_id>/resume")
def resume_channel(channel_id: int):
    principal = _admin()
    if store_rules.resume_channel(principal.tenant_id, channel_id) is None:
        abort(404, "No such channel.")
    flash("Channel resumed; its waiting firings go out now.", "ok")
    return redirect(url_for("web.channel_page", channel_id=channel_id))


@bp.post("/settings/rules/channels/<id:channel_id>/delete")
def delete_channel(channel_id: int):
    principal = _admin()
    if not store_rules.delete_channel(principal.tenant_id, channel_id):
        abort(404, "No such channel.")
    flash("Channel deleted.", "ok")
    return redirect(url_for("web.rules_page"))


@bp.post("/settings/rules/firings/<message_id>/redeliver")
def redeliver(message_id: str):
    principal = _admin()
    if not outbox.redeliver(principal.tenant_id, message_id):
        abort(404, "No such firing with a channel.")
    flash(f"Firing {message_id} queued for delivery again (same webhook-id).", "ok")
    return redirect(request.referrer if _same_site(request.referrer) else url_for("web.rules_page"))


def _same_site(url: str | None) -> bool:
    return bool(url) and url.startswith(request.host_url)


@bp.post("/settings/rules/test-event")
def send_test_event():
    """Anyone who may ingest may prove the live path (the feed's button and the rules page's)."""
    principal = auth.web_principal()
    if not principal.can("ingest"):
        abort(403, "Only someone who may post events can send a test event.")
    activity, published_ms = manage.send_test_event(principal.tenant_id, principal.user_email or "local mode")
    return render_template("settings/_rules_test_event.html", activity=activity, published_ms=published_ms)
