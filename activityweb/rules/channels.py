"""Channels: how one outbox message reaches a receiver.

- `webhook`: the payload as JSON, signed to the Standard Webhooks spec
  (`webhook-id`, `webhook-timestamp`, `webhook-signature`) by the
  `standardwebhooks` library; the id is the message's, the same on retries.
- `slack`: a Slack incoming webhook, with a readable message that links
  back to the feed filtered as the rule filters.
- `email`: over the operator's SMTP server; offered only when one is
  configured (`SMTP_HOST`).

Every HTTP call goes through `egress.post` (the SSRF guard).
"""
from __future__ import annotations

import base64
import json
import secrets
import smtplib
import time
from datetime import datetime, timezone
from email.message import EmailMessage

from standardwebhooks.webhooks import Webhook

from .egress import AllowList, Refused, Result, check_url, post

KINDS = ("webhook", "slack", "email")


class ChannelError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def kinds(config) -> tuple[str, ...]:
    """The kinds this server offers: email only with an SMTP server."""
    return KINDS if config.get("SMTP_HOST") else KINDS[:2]


def new_secret() -> str:
    """A Standard Webhooks signing secret: `whsec_` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_channel(kind: str, target: str, config) -> str:
    """A channel's target, checked: a URL the egress guard accepts, or an email address."""
    target = (target or "").strip()
    if kind not in kinds(config):
        raise ChannelError("kind", f"is one of {', '.join(kinds(config))}")
    if kind == "email":
        if "@" not in target or len(target) > 254 or any(c in target for c in " ,;\r\n"):
            raise ChannelError("target", "is one email address")
        return target
    if len(target) > 2000:
        raise ChannelError("target", "a URL is at most 2,000 characters")
    try:
        check_url(target, allow_list(config))
    except Refused as exc:
        raise ChannelError("target", str(exc)) from None
    return target


def allow_list(config) -> AllowList:
    return AllowList.parse(config.get("RULES_EGRESS_ALLOW") or ())


def feed_link(config, payload: dict) -> str:
    base = (config.get("PUBLIC_URL") or config.get("RULES_LINK_BASE") or "http://127.0.0.1:5000").rstrip("/")
    query = payload["data"]["rule"].get("filter", "").lstrip("?")
    return f"{base}/?{query}" if query else f"{base}/"


def send(channel: dict, message_id: str, payload: dict, config) -> Result:
    """Deliver one message on one channel."""
    if channel["kind"] == "webhook":
        return send_webhook(channel, message_id, payload, config)
    if channel["kind"] == "slack":
        body = json.dumps(slack_message(payload, feed_link(config, payload))).encode()
        return post(channel["target"], body, {"Content-Type": "application/json"}, allow_list(config))
    if channel["kind"] == "email":
        return send_email(channel, payload, config)
    return Result(False, error=f"unknown channel kind {channel['kind']!r}")


def send_webhook(channel: dict, message_id: str, payload: dict, config) -> Result:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    now = datetime.now(timezone.utc)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(channel["secret"]).sign(message_id, now, body),
    }
    return post(channel["target"], body.encode(), headers, allow_list(config))


def _slack_escape(text: str) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def headline(payload: dict) -> str:
    data = payload["data"]
    if payload["type"] == "rule.digest":
        return f"{data['rule']['name']}: {data['reason']}"
    return f"{data['rule']['name']} fired: {data['reason']}"


def lines(payload: dict) -> list[str]:
    """What a person reads under the headline: a digest's groups, or the events' titles."""
    data = payload["data"]
    if payload["type"] == "rule.digest":
        return [g["phrase"] for g in data.get("groups", [])[:15]]
    return [e["title"] for e in data.get("events", [])[:5]]


def slack_message(payload: dict, link: str) -> dict:
    """A Slack Block Kit message: headline, what happened, a link to the filtered feed."""
    title = headline(payload)
    body = "\n".join(f"• {_slack_escape(line)}" for line in lines(payload)) or "_no events_"
    return {
        "text": title,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack_escape(title)}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{link}|Open the feed> · "
                                              f"{_slack_escape(payload['data']['rule']['description'])}"}]},
        ],
    }


def send_email(channel: dict, payload: dict, config) -> Result:
    started = time.perf_counter()
    message = EmailMessage()
    message["Subject"] = headline(payload)[:200]
    message["From"] = config.get("SMTP_FROM") or "activityweb@localhost"
    message["To"] = channel["target"]
    message.set_content("\n".join([headline(payload), "", *lines(payload), "", feed_link(config, payload)]))
    try:
        with smtplib.SMTP(config["SMTP_HOST"], int(config.get("SMTP_PORT") or 25), timeout=10) as smtp:
            if config.get("SMTP_STARTTLS"):
                smtp.starttls()
            if config.get("SMTP_USER"):
                smtp.login(config["SMTP_USER"], config.get("SMTP_PASSWORD") or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        return Result(False, error=f"{type(exc).__name__}: {exc}"[:300], seconds=time.perf_counter() - started)
    return Result(True, status=250, seconds=time.perf_counter() - started, body="accepted")


def sample_payload(tenant_slug: str, channel_name: str) -> dict:
    """What a channel's "test" button sends: a firing of no real rule, marked as a test."""
    from ..serialize import iso

    now = datetime.now(timezone.utc)
    return {"type": "rule.test", "timestamp": iso(now), "data": {
        "tenant": tenant_slug, "test": True,
        "rule": {"id": None, "name": f"Test of {channel_name}", "condition": "every", "filter": "",
                 "description": "a test delivery from ActivityWeb"},
        "reason": "a test delivery", "count": 0, "events": []}}
