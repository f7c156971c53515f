"""Salesforce: Platform Events and outbound record notifications, as JSON.

Salesforce has no signature for a callout an org makes itself (an Apex or
Flow HTTP callout, or a middleware relaying Platform Events), so the org
sends the tenant's shared secret in `X-ActivityWeb-Secret` (a Named
Credential's custom header keeps it out of code). It is compared in
constant time; as with any shared secret, use HTTPS.

Two bodies are understood, each alone or as an array:

- a Platform Event as CometD and the Pub/Sub API deliver it:
  `{"channel": "/event/Order_Shipped__e", "data": {"payload": {...},
  "event": {"replayId": 7, "EventUuid": "..."}}}` -> `salesforce.order_shipped`;
- an outbound message's fields as JSON: `{"OrganizationId": ...,
  "Notification": [{"Id": ..., "sObject": {"attributes": {"type":
  "Opportunity"}, "Id": ..., ...}}]}` -> `salesforce.opportunity.changed`,
  or `deal.won` / `deal.lost` for an opportunity that closed.

The source_id is the event's `EventUuid` (else channel and `replayId`) or the
notification `Id`, which Salesforce keeps when it resends: a resend is a
duplicate. (SOAP outbound messages themselves are XML; send their JSON.)
"""
from __future__ import annotations

import hashlib
from typing import Mapping

from ..auth import Principal
from ..errors import invalid_body
from .shaping import as_data, build_event, dig, digest, one_line, parse_json, parse_moment, snake
from .signing import find_signer, invalid_signature, same

SOURCE = "salesforce"
SECRET_HEADER = "X-ActivityWeb-Secret"


def signer(headers: Mapping[str, str]) -> Principal:
    given = headers.get(SECRET_HEADER)
    if not given:
        raise invalid_signature(f"{SECRET_HEADER} is missing: send the secret set by "
                                "`flask integrations set-secret --integration salesforce`.")
    # Digests first, so the comparison takes as long whatever the lengths.
    given_digest = hashlib.sha256(given.encode()).digest()
    return find_signer(SOURCE, "", lambda secret: same(hashlib.sha256(secret.encode()).digest(), given_digest))


def events(body: bytes) -> list[dict]:
    parsed = parse_json(body)
    messages = parsed if isinstance(parsed, list) else [parsed]
    activities = []
    for message in messages:
        if not isinstance(message, dict):
            message = {}
        notifications = _notifications(message)
        if "channel" in message or isinstance(dig(message, "data", "payload"), dict):
            activities.append(_platform_event(message))
        elif notifications is not None:
            organization = message.get("OrganizationId") or message.get("organizationId")
            activities += [_record(n, organization) for n in notifications]
        else:
            raise invalid_body("The body is neither a Platform Event nor an outbound message.",
                               "expected channel and data.payload, or Notification")
    return activities


def _platform_event(message: dict) -> dict:
    channel = str(message.get("channel") or dig(message, "data", "schema") or "/event/Event__e")
    name = channel.rsplit("/", 1)[-1].removesuffix("__e").removesuffix("__chn")
    payload = dig(message, "data", "payload")
    payload = payload if isinstance(payload, dict) else {}
    event = dig(message, "data", "event")
    event = event if isinstance(event, dict) else {}
    key = event.get("EventUuid") or payload.get("EventUuid")
    if not key and event.get("replayId") is not None:
        key = f"{channel}:{event.get('replayId')}"
    return build_event(
        type=f"salesforce.{snake(name)}",
        source=SOURCE,
        source_id=one_line(key, 200) or digest(message),
        title=one_line(name.replace("_", " "), 300) or "Salesforce event",
        actor_id=one_line(payload.get("CreatedById"), 200),
        occurred_at=parse_moment(payload.get("CreatedDate")),
        tags=["salesforce"],
        data=as_data({"channel": channel, "payload": payload, "event": event}),
    )


def _notifications(message: dict) -> list[dict] | None:
    found = message.get("Notification", message.get("notifications"))
    if isinstance(found, dict):
        found = [found]
    if not isinstance(found, list) or not all(isinstance(n, dict) for n in found):
        return None
    return found


def _record(notification: dict, organization) -> dict:
    record = notification.get("sObject") if isinstance(notification.get("sObject"), dict) else {}
    sobject = str(record.get("type") or dig(record, "attributes", "type") or "Record")
    record_id = record.get("Id")
    label = record.get("Name") or record_id or "a record"
    columns = {"type": f"salesforce.{snake(sobject)}.changed", "title": f"{sobject} {label} changed"}
    closed = record.get("IsClosed") in (True, "true") or record.get("StageName") in ("Closed Won", "Closed Lost")
    if sobject == "Opportunity" and closed:
        won = record.get("IsWon") in (True, "true") or record.get("StageName") == "Closed Won"
        amount = record.get("Amount")
        worth = f" (${float(amount):,.0f})" if isinstance(amount, (int, float)) else ""
        columns = {"type": "deal.won" if won else "deal.lost",
                   "title": f"Deal {'won' if won else 'lost'}: {label}{worth}",
                   "status": "success" if won else "failed", "priority": "high" if won else "normal"}
    return build_event(
        source=SOURCE,
        source_id=one_line(notification.get("Id"), 200) or digest(notification),
        **{**columns, "title": one_line(columns["title"], 300)},
        actor_id=one_line(record.get("LastModifiedById"), 200),
        entity_type=snake(sobject),
        entity_id=one_line(record_id, 200),
        entity_name=one_line(record.get("Name"), 300),
        occurred_at=parse_moment(record.get("LastModifiedDate") or record.get("SystemModstamp")),
        tags=["salesforce"],
        data=as_data({"organization_id": organization, "sobject": record}),
    )
