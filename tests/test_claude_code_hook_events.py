"""Every current Claude Code hook event, recorded (tests/fixtures/claude_code/hooks/,
SOURCES.md says how each was made): its type, title and fields as stored."""
import json
from pathlib import Path

import pytest

HOOK = "/api/v1/integrations/claude-code"
HOOKS = Path(__file__).parent / "fixtures" / "claude_code" / "hooks"
MAIN = "3b8cb94d-fc3b-4649-9274-85fb30f3de39"
TURN = "d30e7938-da3f-4bb9-bc47-f8a707c55204"

# fixture -> (type, title, fields the activity must have)
EXPECTED = {
    "Setup": ("claude.setup", "Setup ran (init)", {"entity_type": "session"}),
    "SessionStart": ("claude.session.started", "Session started in billing-api", {}),
    "SessionStart.resume": ("claude.session.started",
                            "Session resumed in billing-api", {}),
    "SessionStart.compact": ("claude.session.started", "Session continued after compaction in billing-api", {}),
    "SessionStart.fork": ("claude.session.started", "Session forked in billing-api", {}),
    "InstructionsLoaded": ("claude.instructions.loaded", "Instructions loaded: CLAUDE.md (Project)",
                           {"entity_type": "file", "entity_name": "CLAUDE.md", "summary": "session_start"}),
    "UserPromptSubmit": ("claude.prompt.submitted", "Prompt: /paginate users", {"request_id": TURN}),
    "UserPromptExpansion": ("claude.prompt.expanded", "Command expanded: /paginate users",
                            {"entity_type": "command", "entity_id": "paginate", "actor_id": "user",
                             "request_id": TURN}),
    "MessageDisplay": ("claude.message", "Claude: I'll look at the code first.",
                       {"entity_type": "message", "summary": "I'll look at the code first."}),
    "PreToolUse": ("claude.tool.started", "Bash: echo hi", {"correlation_id": "toolu_015qIgTjcbhD2ZOcozQvO7g5eo"}),
    "PreToolUse.subagent": ("claude.tool.started", "Bash: grep -n 'def list_' /tmp/awrec/json/billing-api/src/app.py",
                            {"actor_id": "a5945de6c1c068326", "actor_name": "general-purpose"}),
    "PermissionRequest": ("claude.permission.requested", "Permission asked: Bash: curl -s http://127.0.0.1:9/health",
                          {"status": "waiting"}),
    "PostToolUse": ("claude.tool.completed", "Bash: echo hi", {"status": "success"}),
    "PostToolUse.Agent": ("claude.tool.completed", "Agent: Find unpaginated endpoints", {"status": "success"}),
    "PostToolUseFailure": ("claude.tool.failed", "Bash: python3 tests/test_users.py", {"status": "failed"}),
    "PostToolBatch": ("claude.tool.batch", "2 tool calls finished: Bash, Read", {"entity_type": "tool_batch"}),
    "Notification.permission_prompt": ("claude.notification", "Claude needs your permission",
                                       {"entity_id": "permission_prompt", "priority": "high"}),
    "Notification.idle_prompt": ("claude.notification", "Claude is waiting for your input",
                                 {"entity_id": "idle_prompt"}),
    "Notification.agent_needs_input": ("claude.notification",
                                       "Auto mode can't check actions in this session and needs your choice",
                                       {"entity_id": "agent_needs_input"}),
    "Notification.elicitation_response": ("claude.notification", 'Elicitation response for server "release": cancel',
                                          {"entity_id": "elicitation_response"}),
    "SubagentStart": ("claude.subagent.started", "Subagent started: general-purpose",
                      {"entity_id": "a5945de6c1c068326", "correlation_id": "a5945de6c1c068326"}),
    "SubagentStop": ("claude.subagent.stopped", "Subagent finished: general-purpose",
                     {"summary": "Found 3 list endpoints without pagination: GET /users, GET /orders and GET /invoices "
                                 "(src/app.py)."}),
    "TaskCreated": ("claude.task.created", "Task created: Paginate GET /users",
                    {"entity_type": "task", "entity_id": "1", "status": "started",
                     "summary": "Page size 50, keep the response shape", "correlation_id": f"task:1@{MAIN}"}),
    "TaskCompleted": ("claude.task.completed", "Task completed: Paginate GET /users",
                      {"status": "success", "correlation_id": f"task:1@{MAIN}"}),
    "TeammateIdle": ("claude.teammate.idle", "Teammate idle: researcher (session-3b8cb94d)",
                     {"actor_id": "researcher", "status": "idle"}),
    "ConfigChange": ("claude.config.changed", "Settings changed: /tmp/awrec/json/billing-api/.claude/settings.local.json (local_settings)",
                     {"entity_type": "file", "entity_name": "settings.local.json"}),
    "CwdChanged": ("claude.cwd.changed", "Changed directory to src",
                   {"entity_type": "directory", "entity_id": "/tmp/awrec/json/billing-api/src"}),
    "DirectoryAdded": ("claude.directory.added", "Directory added: /tmp/awrec/interactive/shared-lib",
                       {"entity_name": "shared-lib", "actor_id": "user"}),
    "FileChanged": ("claude.file.changed", "File added: config.toml", {"entity_name": "config.toml"}),
    "WorktreeCreate": ("claude.worktree.created", "Worktree created: agent-a79aefc85a5ca1a05",
                       {"entity_type": "worktree"}),
    "WorktreeRemove": ("claude.worktree.removed", "Worktree removed: agent-a79aefc85a5ca1a05",
                       {"entity_type": "worktree"}),
    "Elicitation": ("claude.elicitation.requested",
                    "release asks: Which release channel should 'Paginate GET /users' ship to?",
                    {"status": "waiting", "priority": "high", "entity_type": "elicitation"}),
    "ElicitationResult": ("claude.elicitation.answered", "Elicitation cancel: release", {"status": "cancelled"}),
    "PreCompact": ("claude.compact.started", "Compacting the conversation (manual)",
                   {"summary": "keep the pagination notes"}),
    "PostCompact": ("claude.compact.completed", "Conversation compacted (manual)", {}),
    "Stop": ("claude.stop", "Claude finished responding",
             {"summary": "Pagination is in place on GET /users with a page size of 50. The subagent found 2 more "
                         "unpaginated endpoints: GET /orders and GET /invoices."}),
    "StopFailure": ("claude.stop.failed", "Claude stopped on an API error: rate_limit", {"status": "failed"}),
    "SessionEnd": ("claude.session.ended", "Session ended (other)", {}),
    "SessionEnd.prompt_input_exit": ("claude.session.ended", "Session ended (prompt_input_exit)", {}),
}


def load(name: str) -> dict:
    return json.loads((HOOKS / f"{name}.json").read_text())


@pytest.fixture
def headers(make_token):
    return make_token("acme", "ingest,read")


def store_one(client, headers, payload: dict) -> dict:
    response = client.post(HOOK, data=json.dumps(payload), content_type="application/json", headers=headers)
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return client.get(response.headers["Location"], headers=headers).get_json()


def test_every_recorded_event_is_expected():
    assert {p.stem for p in HOOKS.glob("*.json")} == set(EXPECTED)


def test_each_event_has_its_type_title_and_fields(client, headers):
    for name, (activity_type, title, fields) in EXPECTED.items():
        payload = load(name)
        activity = store_one(client, headers, payload)
        assert (activity["type"], activity["title"]) == (activity_type, title), name
        for key, value in fields.items():
            assert activity[key] == value, (name, key, activity[key])
        assert activity["session_id"] == payload["session_id"], name
        # Every event of a turn carries its prompt_id; before the first prompt there is none.
        assert activity["request_id"] == payload.get("prompt_id"), name
        assert activity["data"]["hook_event_name"] == payload["hook_event_name"]
        # The project is the session's, also after `cd src` moved the cwd (the transcript's folder says so).
        assert activity["project"] == "billing-api", (name, activity["project"])


def test_a_task_pairs_with_its_completion(client, headers):
    created = store_one(client, headers, {**load("TaskCreated"), "activityweb_occurred_at": "2026-12-02T07:50:00Z"})
    done = store_one(client, headers, {**load("TaskCompleted"), "activityweb_occurred_at": "2026-12-02T07:50:04Z"})
    assert created["correlation_id"] == done["correlation_id"]
    assert done["duration_ms"] == 4000


def test_session_start_links_the_session_it_continues(client, headers):
    store_one(client, headers, {**load("Stop"), "activityweb_occurred_at": "2026-12-02T07:50:00Z"})
    resumed = store_one(client, headers, {**load("SessionStart.resume"), "activityweb_occurred_at": "2026-12-02T07:51:00Z"})
    assert resumed["data"]["continues_session_id"] == MAIN
    fork = load("SessionStart.fork")
    assert fork["session_id"] != MAIN
    forked = store_one(client, headers, {**fork, "activityweb_occurred_at": "2026-12-02T07:52:00Z"})
    assert forked["data"]["continues_session_id"] == MAIN
    fresh = store_one(client, headers, {**load("SessionStart"), "activityweb_occurred_at": "2026-12-02T07:53:00Z"})
    assert "continues_session_id" not in fresh["data"]


def test_the_reply_text_is_masked_and_cut(app, client, headers):
    app.config["CLAUDE_CODE_MAX_FIELD_CHARS"] = 300
    secret = "sk-ant-api03-" + "A" * 90
    reply = f"The key is {secret}. " + "More words. " * 100
    for name in ("Stop", "SubagentStop"):
        activity = store_one(client, headers, {**load(name), "last_assistant_message": reply})
        assert secret not in json.dumps(activity), name
        assert activity["summary"].startswith("The key is"), name
        assert len(activity["data"]["last_assistant_message"]) < 400, name


def test_unknown_events_still_store(client, headers):
    activity = store_one(client, headers, {**load("Setup"), "hook_event_name": "SomethingNew", "x": 1})
    assert activity["type"] == "claude.something_new"
    assert activity["data"]["x"] == 1


def test_generated_settings_leave_out_the_worktree_hook():
    from activityweb.integrations.claude_code import hook_settings

    hooks = hook_settings("http", "http://aw", "/x/hook.py")["hooks"]
    assert "WorktreeCreate" not in hooks
    assert "Elicitation" in hooks and "TaskCompleted" in hooks
    assert hooks["Setup"][0]["hooks"][0]["type"] == "command"


@pytest.fixture
def web(local_app):
    return local_app.test_client()


def test_a_forked_session_links_the_one_it_continues(web):
    for name, at in (("UserPromptSubmit", "07:50:00"), ("SessionStart.fork", "07:52:00")):
        body = {**load(name), "activityweb_occurred_at": f"2026-12-02T{at}Z"}
        assert web.post(HOOK, data=json.dumps(body), content_type="application/json").status_code == 201
    fork = load("SessionStart.fork")["session_id"]
    page = web.get(f"/conversations/{fork}").get_data(as_text=True)
    assert f'href="/conversations/{MAIN}"' in page and "Continues" in page
    api = web.get(f"/api/v1/conversations/{fork}").get_json()
    assert api["continues"] == MAIN
