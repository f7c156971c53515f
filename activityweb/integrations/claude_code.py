"""Claude Code hooks: one activity per hook event.

Claude Code sends the same JSON to an HTTP hook (the POST body) and to a
command hook (stdin; `hooks/activityweb_hook.py` forwards it here). Every
event carries `session_id`, `transcript_path`, `cwd` and `hook_event_name`;
the rest depends on the event (https://code.claude.com/docs/en/hooks).

- `type`: a fixed name for each known event; any other event still stores,
  as `claude.<snake_case_name>`.
- `source_id` comes from the payload, so a retried delivery is a duplicate:
  the `tool_use_id` (or a subagent's `agent_id`) and the event name where the
  event has one, else a digest of the whole payload. Two byte-identical
  payloads in one session are therefore one event; the command hook stamps
  each run with its time, which tells such repeats apart.
- `occurred_at`: the command hook's stamp (`activityweb_occurred_at`), since
  it may deliver from its spool much later; an HTTP hook is sent while the
  event happens, so the time we receive it stands in.
- `sequence`: `occurred_at` in microseconds since the epoch. Claude Code
  numbers nothing; a counter read from the store would race when parallel tool
  calls fire their hooks at once, and would put spooled events delivered late
  after newer ones. The time of the event orders a session correctly and fits
  in 2**53 microseconds until the year 2255.
- `duration_ms` and outcome: `PostToolUse` / `PostToolUseFailure` are paired
  with the stored `PreToolUse` of the same `tool_use_id` (and `SubagentStop`
  with `SubagentStart` by `agent_id`), which is their `correlation_id`.
- Secrets are masked and long fields cut (`redact`, `shaping`) before any of
  it is stored, titles included.
"""
from __future__ import annotations

import posixpath
import shlex
import time
from datetime import datetime, timezone
from typing import Callable

from flask import current_app
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from .. import store
from ..errors import ApiError, invalid_body
from ..schemas import MAX_TITLE, check_batch
from .claude_code_events import NEWER_EVENT_TYPES, NEWER_READ_FIELDS, describe_newer, project_root, task_key
from .redact import Redactor, redactor
from .shaping import (
    MAX_JSON_TOKENS,
    build_event,
    clip,
    digest,
    fit_data,
    json_tokens,
    microseconds,
    one_line,
    parse_json,
    parse_moment,
    shape,
    snake,
)

SOURCE = "claude_code"
ENDPOINT = "/api/v1/integrations/claude-code"
# Set by hooks/activityweb_hook.py: when the hook ran, which is when the event happened.
STAMP = "activityweb_occurred_at"
# Set by the hook too: the run's own id, the source_id where the payload has none.
EVENT_ID = "activityweb_event_id"
HOOK_FIELDS = (STAMP, EVENT_ID)

EVENT_TYPES = {
    "SessionStart": "claude.session.started",
    "SessionEnd": "claude.session.ended",
    "UserPromptSubmit": "claude.prompt.submitted",
    "PreToolUse": "claude.tool.started",
    "PostToolUse": "claude.tool.completed",
    "PostToolUseFailure": "claude.tool.failed",
    "PermissionRequest": "claude.permission.requested",
    "PermissionDenied": "claude.permission.denied",
    "Notification": "claude.notification",
    "Stop": "claude.stop",
    "StopFailure": "claude.stop.failed",
    "SubagentStart": "claude.subagent.started",
    "SubagentStop": "claude.subagent.stopped",
    "PreCompact": "claude.compact.started",
    "PostCompact": "claude.compact.completed",
    **NEWER_EVENT_TYPES,
}
# Claude Code runs only command hooks for these (no HTTP hooks).
COMMAND_ONLY_EVENTS = {"SessionStart", "Setup"}
# A configured WorktreeCreate hook replaces git and must print the new
# worktree's path, which a watching hook does not: the settings leave it out.
NOT_HOOKED = {"WorktreeCreate"}
# Events that finish what an earlier event started: (the start's type, the id they share).
FINISHES = {
    "PostToolUse": ("claude.tool.started", "tool_use_id"),
    "PostToolUseFailure": ("claude.tool.started", "tool_use_id"),
    "SubagentStop": ("claude.subagent.started", "agent_id"),
    "TaskCompleted": ("claude.task.created", "task_id"),
}
STARTS = {start for start, _ in FINISHES.values()}
# The tool argument a title shows, and what joins it to the tool name: a
# command or query after a colon ("Bash: npm test"), a file after a space
# ("Edit src/app.py").
TOOL_ARGUMENTS = {
    **{tool: (argument, ": ") for tool, argument in (
        ("Bash", "command"), ("Grep", "pattern"), ("Glob", "pattern"), ("WebFetch", "url"), ("WebSearch", "query"),
        ("Agent", "description"), ("Task", "description"), ("Skill", "skill"))},
    **{tool: (argument, " ") for tool, argument in (
        ("Read", "file_path"), ("Edit", "file_path"), ("MultiEdit", "file_path"), ("Write", "file_path"),
        ("NotebookEdit", "notebook_path"))},
}
SESSION_STARTS = {"startup": "Session started", "resume": "Session resumed", "clear": "Session cleared",
                  "compact": "Session continued after compaction", "fork": "Session forked"}
# SessionStart sources that continue an earlier session (a fork under a new session id).
CONTINUES = ("resume", "compact", "fork")
TITLE_CHARS = 200


def events_from_body(tenant_id: int, body: bytes) -> tuple[list[dict], bool]:
    """Activities for a POSTed hook payload, or an array of them (the command
    hook's spool); and whether it was an array."""
    if len(body) > YIELD_ABOVE_BYTES:
        # Under gevent, sleep(0) lets the requests waiting on this worker run
        # before the tens of milliseconds a large body takes to parse.
        time.sleep(0)
    tokens = json_tokens(body)
    payloads, is_batch = _payloads(parse_json(body) if tokens <= MAX_JSON_TOKENS else _named_fields(body, tokens))
    config = current_app.config
    masker = redactor(tuple(config.get("REDACT_PATTERNS") or ()))
    max_chars = config["CLAUDE_CODE_MAX_FIELD_CHARS"]
    # The stored starts every finish in the body pairs with, in one query;
    # starts earlier in this body are not stored yet, so they come first.
    wanted = {(FINISHES[name][0], key) for payload in payloads
              if (name := payload["hook_event_name"].strip()) in FINISHES and (key := _shared_id(name, payload))}
    stored = store.occurred_times(tenant_id, SOURCE, wanted)
    started_here: dict[tuple[str, str], datetime] = {}

    def started_at(start_type: str, key: str) -> datetime | None:
        return started_here.get((start_type, key)) or stored.get((start_type, key))

    events = []
    for payload in payloads:
        event = to_activity(payload, max_chars=max_chars, masker=masker, started_at=started_at)
        if event["type"] in STARTS and event["correlation_id"]:
            started_here[(event["type"], event["correlation_id"])] = event["occurred_at"]
        events.append(event)
    _link_continued(tenant_id, events)
    return events, is_batch


# A body too big to parse whole keeps only the fields the mapping reads
# (`_describe`): they are parsed in Rust by pydantic, which skips the rest
# without making Python objects of it (25 ms for 260,000 keys, not 200+).
_READ_FIELDS = ("hook_event_name", "session_id", "transcript_path", "cwd", "permission_mode", "tool_name",
                "tool_use_id", "agent_id", "agent_type", "source", "reason", "error", "error_message",
                "is_interrupt", "prompt", "last_assistant_message", "error_details", "notification_type", "message",
                "title", "trigger", "custom_instructions", "compact_summary", STAMP, EVENT_ID, *NEWER_READ_FIELDS)
_Scalar = str | int | float | bool | None
_ToolArguments = create_model("_ToolArguments", __config__=ConfigDict(extra="ignore"),
                              **{argument: (_Scalar, None) for argument, _ in TOOL_ARGUMENTS.values()})
_NamedFields = create_model("_NamedFields", __config__=ConfigDict(extra="ignore"),
                            tool_input=(_ToolArguments | None, None), **{f: (_Scalar, None) for f in _READ_FIELDS})


YIELD_ABOVE_BYTES = 256 * 1024


def _named_fields(body: bytes, tokens: int) -> dict:
    """The fields of one hook payload the mapping reads, from a body with too
    many keys and items to parse whole; an array that large is refused (the
    hook then sends its spool in smaller pieces)."""
    if body[:256].lstrip()[:1] == b"[":
        raise ApiError(413, "body_too_large", f"A batch of hook payloads holds at most about {MAX_JSON_TOKENS:,} "
                       "keys and items in all; send fewer payloads per request.")
    try:
        fields = _NamedFields.model_validate_json(body)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
        raise invalid_body("A payload this large must keep its named fields plain text or numbers.",
                           "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]))
    payload = fields.model_dump(exclude_none=True)
    if not payload.get("tool_input"):
        payload.pop("tool_input", None)
    payload["cut"] = (f"the payload was {len(body):,} bytes with about {tokens:,} keys and items; "
                      "only the fields above were kept")
    return payload


def _link_continued(tenant_id: int, events: list[dict]) -> None:
    """A SessionStart that resumes, compacts or forks says which session it
    continues (`data.continues_session_id`): a resume or compaction its own
    session, a fork (a new session id) the project's session active just before."""
    for event in events:
        source = event["data"].get("source") if event["type"] == "claude.session.started" else None
        if source not in CONTINUES:
            continue
        session = event["session_id"]
        if source == "fork":
            session = store.sessions.previous_session(tenant_id, SOURCE, event["project"], event["occurred_at"],
                                                      other_than=session)
        if session:
            event["data"]["continues_session_id"] = session


def _payloads(parsed) -> tuple[list[dict], bool]:
    is_batch = isinstance(parsed, list)
    payloads = parsed if is_batch else [parsed]
    check_batch(payloads, is_batch, current_app.config["MAX_BATCH"], "hook payloads")
    for index, payload in enumerate(payloads):
        prefix = f"[{index}]." if is_batch else ""
        if not isinstance(payload, dict):
            raise invalid_body("A hook payload is a JSON object.", "expected an object", prefix.rstrip(".") or "body")
        name = payload.get("hook_event_name")
        if not isinstance(name, str) or not name.strip():
            raise invalid_body("A hook payload names its event in `hook_event_name`.", "is required",
                               prefix + "hook_event_name")
    return payloads, is_batch


def to_activity(
    payload: dict,
    *,
    max_chars: int,
    masker: Redactor,
    started_at: Callable[[str, str], datetime | None],
) -> dict:
    """One hook payload as an activity (see the module docstring for the choices)."""
    name = payload["hook_event_name"].strip()
    activity_type = EVENT_TYPES.get(name) or f"claude.{snake(name)}"
    occurred_at = parse_moment(payload.get(STAMP)) or datetime.now(timezone.utc)
    # Everything a person reads is built from the masked and cut payload.
    seen = shape({k: v for k, v in payload.items() if k not in HOOK_FIELDS}, max_chars=max_chars, redactor=masker)
    session = _text(seen, "session_id")
    shared_id = _shared_id(name, payload)
    duration = None
    if name in FINISHES and shared_id:
        start = started_at(FINISHES[name][0], shared_id)
        if start is not None and start <= occurred_at:
            duration = int((occurred_at - start).total_seconds() * 1000)
    return build_event(
        type=activity_type,
        source=SOURCE,
        # Stable across retries of one delivery (see the module docstring).
        source_id=f"{shared_id[:130]}:{snake(name)}" if shared_id else f"{snake(name)}:{_run_id(payload)}",
        session_id=session,
        conversation_id=session,
        sequence=microseconds(occurred_at),
        correlation_id=shared_id,
        # Claude Code's prompt_id ties every event of one user prompt (a turn),
        # hooks and OpenTelemetry events alike.
        request_id=_text(seen, "prompt_id"),
        project=one_line(_basename(project_root(payload.get("cwd"), payload.get("transcript_path"))
                                   or seen.get("cwd")), 200),
        duration_ms=duration,
        occurred_at=occurred_at,
        data=fit_data({k: v for k, v in seen.items() if k != "session_id"}),
        **_describe(name, seen),
    )


def _run_id(payload: dict) -> str:
    """The hook run's id (EVENT_ID), else a digest of the payload."""
    given = payload.get(EVENT_ID)
    if isinstance(given, str) and 0 < len(given) <= 64 and given.isascii() and given.isalnum():
        return given
    return digest(payload)


def _shared_id(name: str, payload: dict) -> str | None:
    """The id a start and its finish share: a subagent's agent_id, a task's id in its session, else the tool_use_id."""
    if name.startswith("Task"):
        return task_key(payload)
    return _text(payload, "agent_id" if name.startswith("Subagent") else "tool_use_id")


def _describe(name: str, p: dict) -> dict:
    """Title, summary, actor, entity, status and priority of one event."""
    session = _text(p, "session_id")
    project = one_line(_basename(p.get("cwd")), 200)
    claude = {"actor_id": "claude", "actor_name": "Claude"}
    if _text(p, "agent_id") and not name.startswith("Subagent"):
        # The hook fired inside a subagent: it is the one acting.
        claude = {"actor_id": _text(p, "agent_id"), "actor_name": _text(p, "agent_type") or "Subagent"}
    session_entity = {"entity_type": "session", "entity_id": session, "entity_name": project}
    tool = _text(p, "tool_name")
    tool_entity = {"entity_type": "tool", "entity_id": tool, "entity_name": tool}
    tool_title = _tool_title(tool, p.get("tool_input"), p.get("cwd"))

    if name in ("PreToolUse", "PostToolUse", "PostToolUseFailure"):
        columns = {"title": tool_title, **claude, **tool_entity}
        if name == "PreToolUse":
            return {**columns, "status": "started"}
        if name == "PostToolUse":
            return {**columns, "status": "success"}
        interrupted = p.get("is_interrupt") is True
        return {**columns, "status": "interrupted" if interrupted else "failed",
                "priority": "normal" if interrupted else "high",
                "summary": clip(p.get("error") or p.get("error_message"), 5000)}
    if name == "PermissionRequest":
        return {"title": f"Permission asked: {tool_title}", **claude, **tool_entity, "status": "waiting"}
    if name == "PermissionDenied":
        return {"title": f"Permission denied: {tool_title}", **claude, **tool_entity, "status": "denied",
                "priority": "high", "summary": clip(p.get("reason"), 5000)}
    if name == "UserPromptSubmit":
        prompt = p.get("prompt")
        return {"title": f"Prompt: {one_line(prompt, TITLE_CHARS) or '(empty)'}", "summary": clip(prompt, 5000),
                "actor_id": "user", "actor_name": "User", "entity_type": "prompt"}
    if name == "SessionStart":
        started = SESSION_STARTS.get(_text(p, "source") or "", "Session started")
        return {"title": f"{started} in {project}" if project else started, **session_entity}
    if name == "SessionEnd":
        reason = _text(p, "reason")
        return {"title": f"Session ended ({reason})" if reason else "Session ended", **session_entity}
    if name == "Stop":
        return {"title": "Claude finished responding", "summary": clip(p.get("last_assistant_message"), 5000),
                **claude, **session_entity, "status": "success"}
    if name == "StopFailure":
        error = _text(p, "error") or "unknown"
        return {"title": f"Claude stopped on an API error: {error}", **claude, **session_entity,
                "summary": clip(p.get("error_details") or p.get("last_assistant_message"), 5000),
                "status": "failed", "priority": "high"}
    if name == "Notification":
        kind = _text(p, "notification_type")
        return {"title": one_line(p.get("message"), TITLE_CHARS) or "Claude Code notification",
                "summary": clip(p.get("title"), 5000), **claude,
                "entity_type": "notification", "entity_id": kind,
                # Someone has to act before Claude can go on.
                "priority": "high" if kind in ("permission_prompt", "elicitation_dialog") else "normal"}
    if name in ("SubagentStart", "SubagentStop"):
        agent_type = _text(p, "agent_type") or "subagent"
        verb = "started" if name == "SubagentStart" else "finished"
        return {"title": f"Subagent {verb}: {agent_type}", **claude,
                "entity_type": "subagent", "entity_id": _text(p, "agent_id"), "entity_name": agent_type,
                "status": "started" if name == "SubagentStart" else "success",
                "summary": clip(p.get("last_assistant_message"), 5000)}
    if name in ("PreCompact", "PostCompact"):
        trigger = _text(p, "trigger") or "auto"
        if name == "PreCompact":
            return {"title": f"Compacting the conversation ({trigger})", **session_entity, "status": "started",
                    "summary": clip(p.get("custom_instructions"), 5000)}
        return {"title": f"Conversation compacted ({trigger})", **session_entity, "status": "success",
                "summary": clip(p.get("compact_summary"), 5000)}
    newer = describe_newer(name, p, claude, session_entity)
    if newer is not None:
        return newer
    return {"title": f"Claude Code: {one_line(name, TITLE_CHARS)}", **session_entity}


def _tool_title(tool: str | None, tool_input, cwd) -> str:
    """"Bash: npm test", "Edit src/app.py", "Grep: TODO"; the tool name alone otherwise."""
    tool = tool or "Tool"
    argument_key, joiner = TOOL_ARGUMENTS.get(tool, (None, ""))
    argument = tool_input.get(argument_key) if isinstance(tool_input, dict) and argument_key else None
    if not isinstance(argument, str) or not argument.strip():
        return one_line(tool, TITLE_CHARS) or "Tool"
    if argument_key.endswith("_path"):
        argument = _relative(argument, cwd)
    elif tool == "Bash":
        argument = argument.strip().splitlines()[0]
    return one_line(f"{tool}{joiner}{argument}", min(TITLE_CHARS, MAX_TITLE)) or tool


def _relative(path: str, cwd) -> str:
    """A path as the session sees it: relative to its working directory when inside it."""
    if isinstance(cwd, str) and cwd:
        base = cwd.rstrip("/\\")
        for separator in ("/", "\\"):
            if path.startswith(base + separator):
                return path[len(base) + 1:]
    return path


def _basename(path) -> str | None:
    """The last part of a path (POSIX or Windows): a session's project."""
    if not isinstance(path, str) or not path:
        return None
    return posixpath.basename(path.replace("\\", "/").rstrip("/")) or None


def _text(payload: dict, key: str) -> str | None:
    """A payload field as text for a column (at most 200 characters), or None."""
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return one_line(value, 200)


def hook_settings(style: str, base_url: str, hook_script: str) -> dict:
    """The `settings.json` block that sends every mapped hook event here.

    `http`: Claude Code posts each event itself, with the token from the
    ACTIVITYWEB_TOKEN environment variable; SessionStart runs command hooks
    only, so it uses the command hook either way. `command`: every event goes
    through hooks/activityweb_hook.py, which spools while the server is away.
    """
    base_url = base_url.rstrip("/")
    command = {"type": "command", "command": f"python3 {shlex.quote(hook_script)}", "timeout": 5}
    http = {
        "type": "http",
        "url": base_url + ENDPOINT,
        "timeout": 2,
        "headers": {"Authorization": "Bearer $ACTIVITYWEB_TOKEN"},
        "allowedEnvVars": ["ACTIVITYWEB_TOKEN"],
    }
    hooks = {}
    for event in EVENT_TYPES:
        if event in NOT_HOOKED:
            continue
        handler = http if style == "http" and event not in COMMAND_ONLY_EVENTS else command
        hooks[event] = [{"hooks": [handler]}]
    # The command hook reads the server's address from the environment Claude Code gives it.
    return {"env": {"ACTIVITYWEB_URL": base_url}, "hooks": hooks}
