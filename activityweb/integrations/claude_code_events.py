"""Titles and fields of Claude Code's newer hook events.

`claude_code._describe` handles the events ActivityWeb has mapped since the
start; the events Claude Code added later (Setup, UserPromptExpansion,
PostToolBatch, MessageDisplay, the Task and Teammate events, the
instruction, settings, directory, file and worktree events, elicitations)
are described here, one function per event, over the payload already masked
and cut. Field names are the documented ones
(https://code.claude.com/docs/en/hooks; tests/fixtures/claude_code/SOURCES.md).
"""
from __future__ import annotations

import posixpath
import re
from typing import Callable

from .shaping import clip, one_line

TITLE_CHARS = 200
SUMMARY_CHARS = 5000

NEWER_EVENT_TYPES = {
    "Setup": "claude.setup",
    "UserPromptExpansion": "claude.prompt.expanded",
    "PostToolBatch": "claude.tool.batch",
    "MessageDisplay": "claude.message",
    "TaskCreated": "claude.task.created",
    "TaskCompleted": "claude.task.completed",
    "TeammateIdle": "claude.teammate.idle",
    "InstructionsLoaded": "claude.instructions.loaded",
    "ConfigChange": "claude.config.changed",
    "CwdChanged": "claude.cwd.changed",
    "DirectoryAdded": "claude.directory.added",
    "FileChanged": "claude.file.changed",
    "WorktreeCreate": "claude.worktree.created",
    "WorktreeRemove": "claude.worktree.removed",
    "Elicitation": "claude.elicitation.requested",
    "ElicitationResult": "claude.elicitation.answered",
}
# The fields these events and the turn read: what a body too large to parse
# whole still keeps (`claude_code._named_fields`).
NEWER_READ_FIELDS = ("prompt_id", "expansion_type", "command_name", "command_args", "command_source", "turn_id",
                     "message_id", "delta", "task_id", "task_subject", "task_description", "teammate_name",
                     "team_name", "file_path", "memory_type", "load_reason", "old_cwd", "new_cwd", "directory",
                     "event", "name", "worktree_path", "mcp_server_name", "mode", "url", "action")
FILE_EVENTS = {"add": "added", "change": "changed", "unlink": "removed"}
_PATH_CHARS = re.compile(r"[^A-Za-z0-9]")


def _text(p: dict, key: str) -> str | None:
    value = p.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return one_line(value, 200)


def _relative(path, cwd) -> str | None:
    if not isinstance(path, str) or not path:
        return None
    if isinstance(cwd, str) and cwd and path.startswith(cwd.rstrip("/") + "/"):
        return path[len(cwd.rstrip("/")) + 1:]
    return path


def _name(path) -> str | None:
    if not isinstance(path, str) or not path:
        return None
    return posixpath.basename(path.replace("\\", "/").rstrip("/")) or None


def _title(*parts) -> str:
    return one_line("".join(str(part) for part in parts if part), TITLE_CHARS) or "Claude Code event"


def _setup(p, base):
    trigger = _text(p, "trigger")
    return {"title": _title("Setup ran", f" ({trigger})" if trigger else ""), **base["session"]}


def _prompt_expanded(p, base):
    command = _text(p, "command_name")
    args = _text(p, "command_args")
    shown = f"/{command}" + (f" {args}" if args else "") if command else _text(p, "prompt")
    return {"title": _title("Command expanded: ", shown or "(empty)"), "summary": clip(p.get("prompt"), SUMMARY_CHARS),
            "actor_id": "user", "actor_name": "User", "entity_type": "command", "entity_id": command,
            "entity_name": command}


def _tool_batch(p, base):
    calls = [c for c in p.get("tool_calls") or [] if isinstance(c, dict)]
    names = [one_line(c.get("tool_name"), 60) or "Tool" for c in calls]
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    return {"title": _title(f"{len(calls)} tool call{'s' if len(calls) != 1 else ''} finished: ", shown),
            **base["claude"], "entity_type": "tool_batch", "status": "success"}


def _message(p, base):
    text = p.get("delta")
    return {"title": _title("Claude: ", one_line(text, TITLE_CHARS) or "(empty message)"),
            "summary": clip(text, SUMMARY_CHARS), **base["claude"], "entity_type": "message",
            "entity_id": _text(p, "message_id")}


def _task(verb: str, status: str):
    def describe(p, base):
        subject = _text(p, "task_subject") or _text(p, "task_id") or "task"
        return {"title": _title(f"Task {verb}: ", subject), "summary": clip(p.get("task_description"), SUMMARY_CHARS),
                **base["claude"], "entity_type": "task", "entity_id": _text(p, "task_id"), "entity_name": subject,
                "status": status}
    return describe


def _teammate_idle(p, base):
    name = _text(p, "teammate_name") or "a teammate"
    team = _text(p, "team_name")
    return {"title": _title("Teammate idle: ", name, f" ({team})" if team else ""),
            "actor_id": name, "actor_name": name, "entity_type": "teammate", "entity_id": name, "entity_name": name,
            "status": "idle"}


def _instructions(p, base):
    path = p.get("file_path")
    kind = _text(p, "memory_type")
    return {"title": _title("Instructions loaded: ", _relative(path, p.get("cwd")) or "?", f" ({kind})" if kind else ""),
            "summary": clip(_text(p, "load_reason"), SUMMARY_CHARS), **base["session_entity_file"](path)}


def _config(p, base):
    path = p.get("file_path")
    where = _text(p, "source")
    return {"title": _title("Settings changed: ", _relative(path, p.get("cwd")) or where or "?",
                            f" ({where})" if where and path else ""), **base["session_entity_file"](path)}


def _cwd(p, base):
    new = p.get("new_cwd")
    old = p.get("old_cwd")
    return {"title": _title("Changed directory to ", _relative(new, old) or "?"),
            "summary": clip(f"{old} → {new}" if old and new else new, SUMMARY_CHARS), **base["claude"],
            "entity_type": "directory", "entity_id": one_line(new, 200), "entity_name": _name(new)}


def _directory_added(p, base):
    directory = p.get("directory")
    return {"title": _title("Directory added: ", one_line(directory, TITLE_CHARS) or "?"),
            "actor_id": "user", "actor_name": "User", "entity_type": "directory",
            "entity_id": one_line(directory, 200), "entity_name": _name(directory)}


def _file_changed(p, base):
    path = p.get("file_path")
    verb = FILE_EVENTS.get(_text(p, "event") or "", "changed")
    return {"title": _title(f"File {verb}: ", _relative(path, p.get("cwd")) or "?"), **base["session_entity_file"](path)}


def _worktree_created(p, base):
    name = _text(p, "name")
    return {"title": _title("Worktree created: ", name or "?"), **base["claude"], "entity_type": "worktree",
            "entity_id": name, "entity_name": name}


def _worktree_removed(p, base):
    path = p.get("worktree_path")
    return {"title": _title("Worktree removed: ", _name(path) or "?"), **base["claude"], "entity_type": "worktree",
            "entity_id": _name(path), "entity_name": _name(path), "summary": clip(path, SUMMARY_CHARS)}


def _elicitation(p, base):
    server = _text(p, "mcp_server_name") or "An MCP server"
    question = one_line(p.get("message"), TITLE_CHARS) or "asks for input"
    return {"title": _title(f"{server} asks: ", question), "summary": clip(p.get("url") or p.get("message"), SUMMARY_CHARS),
            **base["claude"], "entity_type": "elicitation", "entity_id": server, "entity_name": server,
            # Someone has to answer before the tool call can go on.
            "status": "waiting", "priority": "high"}


def _elicitation_result(p, base):
    server = _text(p, "mcp_server_name") or "an MCP server"
    action = _text(p, "action") or "answered"
    return {"title": _title(f"Elicitation {action}: ", server), **base["claude"], "entity_type": "elicitation",
            "entity_id": server, "entity_name": server,
            "status": {"accept": "success", "decline": "denied", "cancel": "cancelled"}.get(action, action.lower()[:50])}


DESCRIBE: dict[str, Callable[[dict, dict], dict]] = {
    "Setup": _setup,
    "UserPromptExpansion": _prompt_expanded,
    "PostToolBatch": _tool_batch,
    "MessageDisplay": _message,
    "TaskCreated": _task("created", "started"),
    "TaskCompleted": _task("completed", "success"),
    "TeammateIdle": _teammate_idle,
    "InstructionsLoaded": _instructions,
    "ConfigChange": _config,
    "CwdChanged": _cwd,
    "DirectoryAdded": _directory_added,
    "FileChanged": _file_changed,
    "WorktreeCreate": _worktree_created,
    "WorktreeRemove": _worktree_removed,
    "Elicitation": _elicitation,
    "ElicitationResult": _elicitation_result,
}


def describe_newer(name: str, p: dict, claude: dict, session_entity: dict) -> dict | None:
    """Title and columns of a newer event, or None for an event not described here."""
    describe = DESCRIBE.get(name)
    if describe is None:
        return None

    def session_entity_file(path) -> dict:
        return {**session_entity, "entity_type": "file", "entity_id": one_line(path, 200),
                "entity_name": _name(path)} if path else dict(session_entity)

    return describe(p, {"claude": claude, "session": session_entity, "session_entity_file": session_entity_file})


def task_key(payload: dict) -> str | None:
    """A task's id within its session: Task ids count from 1 in every session."""
    task, session = _text(payload, "task_id"), _text(payload, "session_id")
    return f"task:{task}@{session}"[:200] if task and session else None


def project_root(cwd, transcript_path) -> str | None:
    """The session's project directory: Claude Code keeps a session's transcript
    under ~/.claude/projects/<the project path, each non-alphanumeric character
    a dash>/, so the cwd or the parent of it that encodes to that name is the
    project even after a `cd` (CwdChanged) moved the cwd into a subdirectory."""
    if not isinstance(cwd, str) or not cwd or not isinstance(transcript_path, str):
        return None
    parts = transcript_path.replace("\\", "/").split("/")
    if "projects" not in parts[:-1]:
        return None
    encoded = parts[parts.index("projects") + 1] if parts.index("projects") + 1 < len(parts) - 1 else None
    path = cwd.replace("\\", "/").rstrip("/")
    while encoded and path:
        if _PATH_CHARS.sub("-", path) == encoded:
            return path
        path = path.rsplit("/", 1)[0] if "/" in path else ""
    return None
