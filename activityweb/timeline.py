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
- Claude Code's OpenTelemetry events (source `claude_code_otel`) about a
  tool call or prompt the hooks also reported (same `tool_use_id` or
  `prompt_id`) are that step's `telemetry`, not steps of their own; its API
  calls are the cost of the turn, not steps.
- Turns: consecutive top-level steps of one `request_id` (Claude Code's
  prompt_id); a step without one stays in the turn it follows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .costs import API_REQUEST, Usage, usage_of_events

# Statuses that do not finish a started step.
NOT_AN_OUTCOME = (None, "started", "waiting")
# Tools that run a subagent (Claude Code renamed Task to Agent).
SPAWNING_TOOLS = ("Task", "Agent")
# What a step is, from its opening event: (entity_type, kind); types override.
KINDS_BY_ENTITY = {"prompt": "prompt", "tool": "tool", "subagent": "subagent", "session": "session"}
# A conversation ends with one of these; one idle this long counts as ended too.
ENDING_TYPES = ("claude.session.ended",)
RUNNING_IDLE = timedelta(minutes=30)
KINDS_BY_TYPE = {"claude.stop": "reply", "claude.stop.failed": "reply", "claude.message": "reply"}
TELEMETRY_SOURCE = "claude_code_otel"
HOOK_SOURCE = "claude_code"


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
    usage: Usage | None = None  # cost and tokens from telemetry, where the store has them

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
    telemetry: list[dict] = field(default_factory=list)

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
    hook_keys = {_join_key(e) for e in events if e.get("source") == HOOK_SOURCE} - {None}
    joined = [e for e in events if e.get("source") == TELEMETRY_SOURCE and _join_key(e) in hook_keys]
    joined_ids = {id(e) for e in joined}
    top = _steps([e for e in events if id(e) not in joined_ids and e.get("type") != API_REQUEST])
    by_key: dict[tuple, Step] = {}
    for step in _walk(top):
        for event in (step.event, step.result):
            if event is not None and event.get("source") == HOOK_SOURCE:
                by_key.setdefault(_join_key(event), step)
    for event in joined:
        by_key[_join_key(event)].telemetry.append(event)
    return top


def _join_key(event: dict) -> tuple | None:
    """What ties a telemetry event to the hook events of the same thing: the tool call, else the prompt."""
    if event.get("correlation_id") and event.get("entity_type") == "tool":
        return ("tool", event["correlation_id"])
    if event.get("request_id") and event.get("type") in ("claude.prompt.submitted", "claude.otel.user_prompt"):
        return ("prompt", event["request_id"])
    # A reply shown (MessageDisplay) and the same reply logged (assistant_response)
    # share no id; within a turn their text tells them apart.
    if event.get("summary") and event.get("type") in ("claude.message", "claude.otel.assistant_response"):
        return ("reply", event.get("request_id"), event["summary"][:300])
    return None


def _walk(steps: list[Step]):
    for step in steps:
        yield step
        yield from _walk(step.steps)


@dataclass
class Turn:
    """The steps of one user prompt, and what its API calls cost."""

    prompt_id: str | None
    steps: list[Step]
    usage: Usage | None
    number: int | None = None  # 1, 2, ... for the turns that have a prompt


def turns(steps: list[Step], events: list[dict]) -> list[Turn]:
    """Top-level steps grouped into turns by `request_id` (see the module docstring)."""
    found: list[Turn] = []
    for step in steps:
        prompt_id = step.event.get("request_id")
        if not found or (prompt_id and prompt_id != found[-1].prompt_id):
            found.append(Turn(prompt_id, [], None))
        found[-1].steps.append(step)
    by_prompt: dict[str | None, list[dict]] = {}
    for event in events:
        if event.get("type") == API_REQUEST:
            by_prompt.setdefault(event.get("request_id"), []).append(event)
    for turn in found:
        turn.usage = usage_of_events(by_prompt.pop(turn.prompt_id, []))
    if by_prompt:  # API calls of a turn that has no step here (a conversation cut short)
        for prompt_id, calls in by_prompt.items():
            found.append(Turn(prompt_id, [], usage_of_events(calls)))
    for number, turn in enumerate((t for t in found if t.prompt_id), start=1):
        turn.number = number
    return found


def _steps(events: list[dict]) -> list[Step]:
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
    turns: list[Turn] = field(default_factory=list)
    usage: Usage | None = None  # the session's cost and tokens (metrics), set by the caller that has them
    continues: str | None = None  # the session this one resumes or forks
    from_hooks: bool = False  # Claude Code hooks reported it
    needs_telemetry: bool = False  # hooks and no cost: the page says how to turn telemetry on

    @classmethod
    def of(cls, conversation_id: str, events: list[dict], truncated: bool) -> "Timeline":
        steps = build(events)
        continued = next((e["data"].get("continues_session_id") for e in events
                          if e.get("type") == "claude.session.started" and e.get("data")
                          and e["data"].get("continues_session_id") not in (None, conversation_id)), None)
        return cls(conversation_id, ConversationSummary.of(conversation_id, events), steps, truncated,
                   turns=turns(steps, events), continues=continued,
                   from_hooks=any(e.get("source") == HOOK_SOURCE for e in events))

    def with_usage(self, usage: Usage | None) -> "Timeline":
        """The session's cost and tokens; without any, a Claude Code session needs telemetry for them."""
        self.usage = self.summary.usage = usage
        self.needs_telemetry = self.from_hooks and usage is None and not any(t.usage for t in self.turns)
        return self
