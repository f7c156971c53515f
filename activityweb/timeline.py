"""A conversation's events as a timeline a person can follow.

Pure functions over events already in timeline order (`store.conversation`
reads them by `sequence`, then time): no database, no HTML.

- A step opens with an event whose status is `started` and a
  `correlation_id`; a later event with the same id and an outcome (any
  status but `started` or `waiting`) is its result, so a tool call and its
  result show as one step with a duration. Events with the same id in
  between (a permission asked for the call) nest under it.
- A subagent's own events (Claude Code names the subagent as their actor)
  nest under the subagent, and the subagent under the tool call that
  spawned it (the earliest `Task`/`Agent` call still running without one;
  parallel calls start their subagents in the order they were made).
- Everything else is a step of its own: prompts, replies, notifications.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

# Statuses that do not finish a started step.
NOT_AN_OUTCOME = (None, "started", "waiting")
# Tools that run a subagent (Claude Code renamed Task to Agent).
SPAWNING_TOOLS = ("Task", "Agent")
# What a step is, from its opening event: (entity_type, kind); types override.
KINDS_BY_ENTITY = {"prompt": "prompt", "tool": "tool", "subagent": "subagent", "session": "session"}
KINDS_BY_TYPE = {"claude.stop": "reply", "claude.stop.failed": "reply"}
# A conversation ends with one of these; one idle this long counts as ended too.
ENDING_TYPES = ("claude.session.ended",)
RUNNING_IDLE = timedelta(minutes=30)


@dataclass
class ConversationSummary:
    """What a list of conversations shows of each."""

    id: str
    event_count: int
    started_at: datetime
    last_at: datetime
    failures: int
    project: str | None
    first_prompt: str | None
    ended: bool = False  # an ending event (ENDING_TYPES) arrived

    @classmethod
    def of(cls, conversation_id: str, events: list[dict]) -> "ConversationSummary":
        """The summary of a conversation read whole (`events` not empty)."""
        times = [e["occurred_at"] for e in events]
        prompt = next((e for e in events if e.get("entity_type") == "prompt"), None)
        return cls(
            id=conversation_id,
            event_count=len(events),
            started_at=min(times),
            last_at=max(times),
            failures=sum(e.get("status") == "failed" for e in events),
            project=max((e["project"] for e in events if e.get("project")), default=None),
            first_prompt=(prompt.get("summary") or prompt["title"]) if prompt else None,
            ended=any(e["type"] in ENDING_TYPES for e in events),
        )

    @property
    def state(self) -> str:
        """"running" until it ends or has been idle RUNNING_IDLE, then "ended"."""
        idle = datetime.now(timezone.utc) - self.last_at > RUNNING_IDLE
        return "ended" if self.ended or idle else "running"

    @property
    def span_ms(self) -> int:
        return int((self.last_at - self.started_at).total_seconds() * 1000)


@dataclass
class Step:
    event: dict
    result: dict | None = None
    steps: list["Step"] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return KINDS_BY_TYPE.get(self.event["type"]) or KINDS_BY_ENTITY.get(self.event.get("entity_type"), "event")

    @property
    def duration_ms(self) -> int | None:
        """The result's own duration if it has one, else the time between the two events."""
        if self.result is None:
            return self.event.get("duration_ms")
        if self.result.get("duration_ms") is not None:
            return self.result["duration_ms"]
        elapsed = self.result["occurred_at"] - self.event["occurred_at"]
        return int(elapsed.total_seconds() * 1000) if elapsed.total_seconds() >= 0 else None

    @property
    def status(self) -> str | None:
        return (self.result or self.event).get("status")

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def running(self) -> bool:
        return self.result is None and self.event.get("status") == "started"

    @property
    def spawns_subagents(self) -> bool:
        return self.kind == "tool" and self.event.get("entity_id") in SPAWNING_TOOLS


def build(events: list[dict]) -> list[Step]:
    """The top-level steps of a conversation (see the module docstring)."""
    top: list[Step] = []
    open_steps: dict[str, Step] = {}  # correlation id -> a started step awaiting its result
    subagents: dict[str, Step] = {}  # agent id -> its step, which holds what the agent did
    spawners: list[Step] = []  # running Task/Agent calls that have no subagent yet
    for event in events:
        key = event.get("correlation_id")
        opened = open_steps.get(key) if key else None
        if opened is not None:
            if event.get("status") in NOT_AN_OUTCOME:
                opened.steps.append(Step(event))
            else:
                opened.result = event
                del open_steps[key]
                if opened in spawners:
                    spawners.remove(opened)
            continue
        step = Step(event)
        if event.get("actor_id") in subagents:
            subagents[event["actor_id"]].steps.append(step)
        elif step.kind == "subagent" and spawners:
            spawners.pop(0).steps.append(step)
        else:
            top.append(step)
        if key and event.get("status") == "started":
            open_steps[key] = step
            if step.kind == "subagent":
                subagents[key] = step
            elif step.spawns_subagents:
                spawners.append(step)
    return top


@dataclass
class Timeline:
    """One conversation as drawn: its summary and its steps (the page, its
    socket and the API all start from this)."""

    conversation_id: str
    summary: ConversationSummary
    steps: list[Step]
    truncated: bool  # the conversation has more events than were read

    @classmethod
    def of(cls, conversation_id: str, events: list[dict], truncated: bool) -> "Timeline":
        return cls(conversation_id, ConversationSummary.of(conversation_id, events), build(events), truncated)
