"""HubSpot webhooks: verified by the v3 signature, one activity per event.

HubSpot signs `method + URI + body + timestamp` with the app's client secret
(HMAC-SHA256, base64) in `X-HubSpot-Signature-v3`, and sends the timestamp
(milliseconds) in `X-HubSpot-Request-Timestamp`; a request more than five
minutes old is refused, so a captured request cannot be replayed later. The
URI is the one HubSpot called, with some characters percent-decoded; behind a
proxy set ACTIVITYWEB_PUBLIC_URL so we rebuild the same one.

A request carries an array of up to 100 events. HubSpot retries an event
with a higher `attemptNumber` and otherwise the same fields, and its
`eventId` is not guaranteed unique, so the source_id is the `eventId` with a
digest of the event without `attemptNumber`: a retry is a duplicate.
"""
from __future__ import annotations

import base64
from typing import Mapping

from ..auth import Principal
from ..errors import invalid_body
from .shaping import as_data, build_event, digest, one_line, parse_json, parse_moment, snake
from .signing import find_signer, hmac_sha256, invalid_signature, require_fresh, same

SOURCE = "hubspot"
# The percent-encodings HubSpot decodes in the URI it signs.
DECODED_IN_URI = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
                  "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
# Generic (object.*) subscriptions name the object by type id.
OBJECT_TYPES = {"0-1": "contact", "0-2": "company", "0-3": "deal", "0-5": "ticket", "0-7": "product",
                "0-8": "line_item", "0-14": "quote", "0-136": "lead"}
CHANGES = {"creation": "created", "deletion": "deleted", "propertyChange": "property_changed",
           "merge": "merged", "restore": "restored", "associationChange": "association_changed",
           "privacyDeletion": "privacy_deleted"}
# A deal's stage, when it is what changed, says more than "property changed".
DEAL_OUTCOMES = {"closedwon": ("deal.won", "won", "success", "high"),
                 "closedlost": ("deal.lost", "lost", "failed", "normal")}


def signer(method: str, uri: str, headers: Mapping[str, str], body: bytes) -> Principal:
    signature = headers.get("X-HubSpot-Signature-v3")
    if not signature:
        raise invalid_signature("X-HubSpot-Signature-v3 is missing.")
    timestamp = headers.get("X-HubSpot-Request-Timestamp")
    require_fresh(timestamp, unit_seconds=0.001)
    for encoded, character in DECODED_IN_URI.items():
        uri = uri.replace(encoded, character).replace(encoded.lower(), character)
    message = method.upper().encode() + uri.encode() + body + timestamp.strip().encode()
    return find_signer(SOURCE, "", lambda secret: same(base64.b64encode(hmac_sha256(secret, message)), signature))


def events(body: bytes) -> list[dict]:
    parsed = parse_json(body)
    items = parsed if isinstance(parsed, list) else [parsed]
    if not all(isinstance(item, dict) for item in items):
        raise invalid_body("A HubSpot webhook body is an array of event objects.", "expected an array of objects")
    return [_activity(item) for item in items]


def _activity(e: dict) -> dict:
    subscription = str(e.get("subscriptionType") or "object.change")
    kind, _, change = subscription.rpartition(".")
    kind = OBJECT_TYPES.get(str(e.get("objectTypeId")), "object") if kind in ("object", "") else snake(kind)
    verb = CHANGES.get(change, snake(change))
    object_id = e.get("objectId") or e.get("primaryObjectId")
    name = f"{kind.replace('_', ' ').capitalize()} {object_id}"
    columns = {"type": f"{kind}.{verb}", "title": f"{name} {verb.replace('_', ' ')}", "priority": "normal"}
    if verb == "created":
        columns["title"] = f"New {kind.replace('_', ' ')} {object_id}"
    elif verb == "property_changed":
        columns["title"] = f"{name}: {e.get('propertyName')} → {e.get('propertyValue')}"
        outcome = DEAL_OUTCOMES.get(str(e.get("propertyValue"))) if e.get("propertyName") == "dealstage" else None
        if kind == "deal" and outcome:
            activity_type, word, status, priority = outcome
            columns = {"type": activity_type, "title": f"Deal {object_id} {word}", "status": status,
                       "priority": priority}
    retry_free = {k: v for k, v in e.items() if k != "attemptNumber"}
    return build_event(
        source=SOURCE,
        source_id=f"{one_line(e.get('eventId'), 60) or 'event'}:{digest(retry_free)[:32]}",
        **{**columns, "title": one_line(columns["title"], 300)},
        actor_id=one_line(e.get("sourceId"), 200),
        actor_name=one_line(e.get("changeSource"), 200),
        entity_type=kind,
        entity_id=one_line(object_id, 200),
        occurred_at=parse_moment(e.get("occurredAt")),
        tags=["crm"],
        data=as_data(e),
    )
