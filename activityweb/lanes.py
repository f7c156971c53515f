"""Claude Code sessions as they run, from their hook events: what each is
doing now (a lane of /sessions) and whether it waits on a person ("Needs you").

Pure functions over events already read (`store.sessions`); no database.

- Waiting on a person: a permission request, an elicitation, or a
  Notification of type permission_prompt, idle_prompt, elicitation_dialog,
  elicitation_url_dialog or agent_needs_input, with nothing after it that
  shows the session moved on. Moving on: a tool call starting or finishing,
  a prompt, a stop, an elicitation answered (or a notification that it
  was), the session ending (and the same
  from its telemetry: a tool decision or result, a prompt).
- A lane's state: `ended` after SessionEnd (until a SessionStart), `waiting`
  as above, `tool` while a tool call has started and not finished, else
  `idle`. A running subagent is a lane of its own under its session.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

WAITING_TYPES = ("claude.permission.requested", "claude.elicitation.requested")
WAITING_NOTIFICATIONS = ("permission_prompt", "idle_prompt", "elicitation_dialog", "elicitation_url_dialog",
                         "agent_needs_input")
MOVING_TYPES = ("claude.tool.started", "claude.tool.completed", "claude.tool.failed", "claude.prompt.submitted",
                "claude.stop", "claude.stop.failed", "claude.session.ended", "claude.session.started",
                "claude.elicitation.answered", "claude.permission.denied",
                "claude.otel.tool_decision", "claude.otel.tool_result", "claude.otel.user_prompt")
# Notifications that say a question was answered.
MOVING_NOTIFICATIONS = ("elicitation_complete", "elicitation_response")
TOOL_FINISHES = ("claude.tool.completed", "claude.tool.failed")
PULSE_BUCKETS = 30
PULSE_SECONDS = 10  # 30 buckets of 10 s: the last five minutes


def is_waiting(event: dict) -> bool:
    return event["type"] in WAITING_TYPES or (
        event["type"] == "claude.notification" and event.get("entity_id") in WAITING_NOTIFICATIONS)


def moves_on(event: dict) -> bool:
    return event["type"] in MOVING_TYPES or (
        event["type"] == "claude.notification" and event.get("entity_id") in MOVING_NOTIFICATIONS)


def waiting_kind(event: dict) -> str:
    if event["type"] == "claude.permission.requested" or event.get("entity_id") == "permission_prompt":
        return "permission"
    if event["type"] == "claude.elicitation.requested" or str(event.get("entity_id", "")).startswith("elicitation"):
        return "question"
    if event.get("entity_id") == "idle_prompt":
        return "idle"
    return "input"


@dataclass
class Waiting:
    """A session waiting on a person: since when, and what it asks."""

    session_id: str
    project: str | None
    since: datetime
    asks: str  # the first waiting event's title ("Permission asked: Bash: curl ...")
    kind: str  # permission, question, idle, input
    event_id: str
    agent: str | None = None  # the subagent that asks, if one does


def waiting_in(session_id: str, events: list[dict]) -> Waiting | None:
    """Whether this session (its events in time order) waits on a person now."""
    pending: list[dict] = []
    for event in events:
        if is_waiting(event):
            pending.append(event)
        elif moves_on(event):
            pending = []
    if not pending:
        return None
    # A permission request says what it asks better than the notification that follows it.
    first = pending[0]
    asking = next((e for e in pending if e["type"] in WAITING_TYPES), first)
    agent = asking.get("actor_name") if asking.get("actor_id") not in (None, "claude", "user") else None
    return Waiting(session_id, first.get("project"), first["occurred_at"], asking["title"], waiting_kind(asking),
                   asking["id"], agent)


@dataclass
class Lane:
    """A running session or subagent as /sessions shows it."""

    id: str  # the session id, or the subagent's agent_id
    session_id: str
    name: str  # the project, or the subagent's type
    state: str  # tool, waiting, idle, ended
    started_at: datetime
    last_at: datetime
    tool: str | None = None  # the running tool call's title
    tool_since: datetime | None = None
    last_prompt: str | None = None
    waiting: Waiting | None = None
    pulse: list[int] = field(default_factory=list)  # events per PULSE_SECONDS, oldest first
    subagents: list["Lane"] = field(default_factory=list)
    usage: object = None  # costs.Usage, set by the caller that has it

    @property
    def pulse_peak(self) -> int:
        return max(self.pulse or [0]) or 1


def pulse(events: list[dict], now: datetime) -> list[int]:
    counts = [0] * PULSE_BUCKETS
    start = now - timedelta(seconds=PULSE_BUCKETS * PULSE_SECONDS)
    for event in events:
        if event["occurred_at"] >= start:
            index = min(int((event["occurred_at"] - start).total_seconds() // PULSE_SECONDS), PULSE_BUCKETS - 1)
            counts[index] += 1
    return counts


def _running_tool(events: list[dict]) -> dict | None:
    """The latest tool call started and not finished among these events."""
    finished = {e["correlation_id"] for e in events if e["type"] in TOOL_FINISHES and e.get("correlation_id")}
    return next((e for e in reversed(events) if e["type"] == "claude.tool.started"
                 and e.get("correlation_id") not in finished), None)


def _ended(events: list[dict]) -> bool:
    for event in reversed(events):
        if event["type"] == "claude.session.ended":
            return True
        if event["type"] == "claude.session.started":
            return False
    return False


def lane_of(session_id: str, events: list[dict], now: datetime) -> Lane:
    """The lane of one session (its hook events in time order, not empty), with its running subagents."""
    hooks = [e for e in events if e.get("source") == "claude_code"] or events
    subagent_ids = {e["correlation_id"] for e in hooks if e["type"] == "claude.subagent.started"}
    stopped = {e["correlation_id"] for e in hooks if e["type"] == "claude.subagent.stopped"}
    own = [e for e in hooks if e.get("actor_id") not in subagent_ids]
    lane = _lane(session_id, session_id, next((e["project"] for e in hooks if e.get("project")), None) or "session",
                 own, events, now)
    lane.waiting = waiting_in(session_id, hooks)
    prompt = next((e for e in reversed(hooks) if e["type"] == "claude.prompt.submitted"), None)
    lane.last_prompt = (prompt.get("summary") or prompt["title"]) if prompt else None
    if _ended(hooks):
        lane.state = "ended"
    elif lane.waiting:
        lane.state = "waiting"
    for agent_id in sorted(subagent_ids - stopped) if lane.state != "ended" else ():
        start = next(e for e in hooks if e["type"] == "claude.subagent.started" and e["correlation_id"] == agent_id)
        mine = [start] + [e for e in hooks if e.get("actor_id") == agent_id]
        lane.subagents.append(_lane(agent_id, session_id, start.get("entity_name") or "subagent", mine, mine, now))
    return lane


def _lane(lane_id: str, session_id: str, name: str, own: list[dict], everything: list[dict], now: datetime) -> Lane:
    tool = _running_tool(own)
    return Lane(id=lane_id, session_id=session_id, name=name, state="tool" if tool else "idle",
                started_at=everything[0]["occurred_at"], last_at=everything[-1]["occurred_at"],
                tool=tool["title"] if tool else None, tool_since=tool["occurred_at"] if tool else None,
                pulse=pulse(everything, now))
