"""Generic signed webhooks: anyone can post our own event shape to `/webhook/<name>`.

The sender signs `<timestamp>.<body>` with the webhook's secret and sends

    X-ActivityWeb-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

(several `v1=` may be given, so a secret can be rotated without downtime).
A timestamp more than five minutes from our clock is refused, so a captured
request cannot be replayed later; within those minutes a replay is a
duplicate, because the source_id does not depend on the timestamp.

The body is one event or an array of them, exactly as for
`POST /api/v1/activities`. Every event is stored with source `webhook` (a
sender cannot pass itself off as another producer), and its source_id is
prefixed with the webhook's name so two webhooks' ids never collide; an
event without a source_id gets a digest of the body and its position in it,
so a resent body is a duplicate.
"""
from __future__ import annotations

import hashlib
from typing import Mapping

from flask import current_app

from ..auth import Principal
from ..schemas import parse_events
from .signing import find_signer, hmac_sha256, invalid_signature, require_fresh, same

SOURCE = "webhook"
SIGNATURE_HEADER = "X-ActivityWeb-Signature"


def signer(name: str, headers: Mapping[str, str], body: bytes) -> Principal:
    fields: dict[str, list[str]] = {}
    for part in headers.get(SIGNATURE_HEADER, "").split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value.strip())
    if not fields.get("t") or not fields.get("v1"):
        raise invalid_signature(f"{SIGNATURE_HEADER} must be `t=<unix seconds>,v1=<hex HMAC-SHA256>`.")
    timestamp = fields["t"][0]
    require_fresh(timestamp)
    message = timestamp.encode() + b"." + body
    return find_signer(SOURCE, name, lambda secret: _any_matches(hmac_sha256(secret, message).hex(), fields["v1"]))


def _any_matches(expected: str, given: list[str]) -> bool:
    matched = False
    for signature in given:
        matched |= same(expected, signature)
    return matched


def events(name: str, body: bytes) -> list[dict]:
    parsed, _ = parse_events(body, current_app.config["MAX_BATCH"])
    body_digest = hashlib.sha256(body).hexdigest()[:32]
    for position, event in enumerate(parsed):
        given = event["source_id"]
        key = given if given and len(name) + 1 + len(given) <= 200 else (
            hashlib.sha256(given.encode()).hexdigest() if given else f"{body_digest}:{position}")
        event["source"] = SOURCE
        event["source_id"] = f"{name}:{key}"
    return parsed
