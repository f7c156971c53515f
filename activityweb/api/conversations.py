"""Conversations and sessions: the recently active ones, and one as a timeline."""
from flask import g, jsonify, request

from .. import store
from ..auth import require
from ..errors import found
from ..filters import CONVERSATION_KEYS, parse_conversation_query, parse_filter
from ..schemas import parse_limit
from ..serialize import activity_json, any_key, encode_cursor, iso, parse_cursor
from ..timeline import ConversationSummary, Step
from . import bp


@bp.get("/conversations")
@require("read")
def list_conversations():
    """A keyset page of conversations, the most recently active first: the
    page's question (person, failed, state) and any feed filter one of their
    events matches (q and project among them)."""
    query = parse_conversation_query(request.args, events=parse_filter(request.args, extra_keys=CONVERSATION_KEYS))
    page = store.list_conversations(g.principal.tenant_id, query, limit=parse_limit(request.args, 20, 100),
                                    after=parse_cursor(request.args, any_key), reader=store.reader_of(g.principal))
    return jsonify({"items": [summary_json(s) for s in page.items],
                    "next_cursor": encode_cursor(page.next_after) if page.next_after else None})


@bp.get("/conversations/<conversation_id>")
@require("read")
def get_conversation(conversation_id: str):
    timeline = found(store.conversation_timeline(g.principal.tenant_id, conversation_id),
                     f"No conversation {conversation_id!r} in this tenant.")
    slug = g.principal.tenant_slug
    return jsonify({**summary_json(timeline.summary), "truncated": timeline.truncated,
                    "continues": timeline.continues,
                    "steps": [step_json(s, slug) for s in timeline.steps],
                    "turns": [{"prompt_id": t.prompt_id, "usage": t.usage.as_json() if t.usage else None,
                               "steps": [step_json(s, slug) for s in t.steps]} for t in timeline.turns]})


def summary_json(summary: ConversationSummary) -> dict:
    return {"id": summary.id, "first_prompt": summary.first_prompt, "event_count": summary.event_count,
            "started_at": iso(summary.started_at), "last_at": iso(summary.last_at), "span_ms": summary.span_ms,
            "failures": summary.failures, "project": summary.project, "state": summary.state,
            "usage": summary.usage.as_json() if summary.usage else None}


def step_json(step: Step, slug: str) -> dict:
    return {"kind": step.kind, "status": step.status, "failed": step.failed, "running": step.running,
            "duration_ms": step.duration_ms, "event": activity_json(step.event, slug),
            "result": activity_json(step.result, slug) if step.result else None,
            "steps": [step_json(s, slug) for s in step.steps],
            "telemetry": [activity_json(e, slug) for e in step.telemetry]}
