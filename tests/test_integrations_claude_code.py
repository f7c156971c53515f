"""POST /api/v1/integrations/claude-code: recorded hook payloads replayed.

Fixtures in tests/fixtures/claude_code/ are one payload per hook event, as
Claude Code sends them (https://code.claude.com/docs/en/hooks), from one
session in /home/dev/billing-api.
"""
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from activityweb.integrations.redact import MASK

HOOK = "/api/v1/integrations/claude-code"
FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"
SESSION = "6f1c2a9e-3b7d-4c8e-9a51-2d4e8f0b7c13"
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)

# fixture -> (type, title) of the activity it stores
EXPECTED = {
    "session_start": ("claude.session.started", "Session started in billing-api"),
    "user_prompt_submit": ("claude.prompt.submitted", "Prompt: Add pagination to the users endpoint and make sure "
                           "`npm test` passes. Keep the page size at 50."),
    "pre_tool_use_bash": ("claude.tool.started", "Bash: npm test"),
    "post_tool_use_failure": ("claude.tool.failed", "Bash: npm test"),
    "pre_tool_use_edit": ("claude.tool.started", "Edit src/app.py"),
    "post_tool_use_edit": ("claude.tool.completed", "Edit src/app.py"),
    "pre_tool_use_grep": ("claude.tool.started", "Grep: TODO"),
    "post_tool_use_grep": ("claude.tool.completed", "Grep: TODO"),
    "pre_tool_use_read": ("claude.tool.started", "Read .env"),
    "post_tool_use_read": ("claude.tool.completed", "Read .env"),
    "permission_request": ("claude.permission.requested", 'Permission asked: Bash: curl -s -H "Authorization: '
                           f'Bearer {MASK}" https://api.anthropic.com/v1/models'),
    "permission_denied": ("claude.permission.denied", "Permission denied: Bash: rm -rf /tmp/build"),
    "notification": ("claude.notification", "Claude needs your permission to use Bash"),
    "subagent_start": ("claude.subagent.started", "Subagent started: Explore"),
    "subagent_stop": ("claude.subagent.stopped", "Subagent finished: Explore"),
    "pre_compact": ("claude.compact.started", "Compacting the conversation (manual)"),
    "post_compact": ("claude.compact.completed", "Conversation compacted (manual)"),
    "stop": ("claude.stop", "Claude finished responding"),
    "stop_failure": ("claude.stop.failed", "Claude stopped on an API error: rate_limit"),
    "session_end": ("claude.session.ended", "Session ended (prompt_input_exit)"),
    "task_created": ("claude.task.created", "Task created: Paginate GET /orders"),
}


def load(name: str, **changes) -> dict:
    payload = json.loads((FIXTURES / f"{name}.json").read_text())
    payload.update(changes)
    return payload


def stamped(name: str, seconds: float) -> dict:
    """A payload as the command hook sends it: stamped with when the hook ran."""
    return load(name, activityweb_occurred_at=(T0 + timedelta(seconds=seconds)).isoformat())


@pytest.fixture
def headers(make_token):
    return make_token("acme", "ingest,read")


def post(client, headers, body):
    return client.post(HOOK, data=json.dumps(body), content_type="application/json", headers=headers)


def stored(client, headers, response) -> dict:
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    assert response.get_data() == b""  # Claude Code would read a body as instructions
    return client.get(response.headers["Location"], headers=headers).get_json()


def session_events(client, headers) -> list[dict]:
    page = client.get(f"/api/v1/activities?session_id={SESSION}&limit=200", headers=headers).get_json()
    return page["items"]


def test_every_fixture_is_expected():
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(EXPECTED)


def test_each_hook_event_stores_one_activity(client, headers):
    for name, (activity_type, title) in EXPECTED.items():
        response = post(client, headers, load(name))
        assert response.status_code == 201, (name, response.get_json())
        activity = stored(client, headers, response)
        assert (activity["type"], activity["title"]) == (activity_type, title), name
        assert activity["source"] == "claude_code"
        assert activity["session_id"] == activity["conversation_id"] == SESSION
        assert activity["project"] == "billing-api"
        assert activity["data"]["hook_event_name"] == load(name)["hook_event_name"]
        assert "session_id" not in activity["data"]  # it is a column
    assert len(session_events(client, headers)) == len(EXPECTED)


def test_deep_working_directories_still_name_the_project_and_paths(client, headers):
    cwd = "/home/dev/" + "nested/" * 40 + "billing-api"
    edit = load("pre_tool_use_edit", cwd=cwd, tool_input={"file_path": f"{cwd}/src/app.py"})
    activity = stored(client, headers, post(client, headers, edit))
    assert (activity["project"], activity["title"]) == ("billing-api", "Edit src/app.py")


def test_tool_events_name_the_tool_and_their_outcome(client, headers):
    started = stored(client, headers, post(client, headers, load("pre_tool_use_edit")))
    assert (started["entity_type"], started["entity_id"], started["status"]) == ("tool", "Edit", "started")
    assert started["correlation_id"] == "toolu_01HcW8rLk2PqS5vN7xYt3BzA"
    assert started["actor_name"] == "Claude"
    failed = stored(client, headers, post(client, headers, load("post_tool_use_failure")))
    assert (failed["status"], failed["priority"]) == ("failed", "high")
    assert failed["summary"].startswith("Command exited with non-zero status code 1")
    interrupted = stored(client, headers, post(client, headers, load(
        "post_tool_use_failure", tool_use_id="toolu_other", is_interrupt=True)))
    assert (interrupted["status"], interrupted["priority"]) == ("interrupted", "normal")
    denied = stored(client, headers, post(client, headers, load("permission_denied")))
    assert (denied["status"], denied["priority"]) == ("denied", "high")
    notification = stored(client, headers, post(client, headers, load("notification")))
    assert notification["priority"] == "high"  # someone must answer before Claude goes on


def test_finishes_pair_with_their_start_for_duration(client, headers):
    post(client, headers, stamped("pre_tool_use_bash", 0))
    failed = stored(client, headers, post(client, headers, stamped("post_tool_use_failure", 4.25)))
    assert failed["duration_ms"] == 4250
    post(client, headers, stamped("pre_tool_use_edit", 10))
    done = stored(client, headers, post(client, headers, stamped("post_tool_use_edit", 10.031)))
    assert (done["duration_ms"], done["status"]) == (31, "success")
    post(client, headers, stamped("subagent_start", 20))
    subagent = stored(client, headers, post(client, headers, stamped("subagent_stop", 62.5)))
    assert subagent["duration_ms"] == 42500 and subagent["correlation_id"] == "agent-a8f3c21d"


def test_a_finish_without_its_start_has_no_duration(client, headers):
    lone = stored(client, headers, post(client, headers, stamped("post_tool_use_grep", 1)))
    assert lone["duration_ms"] is None and lone["status"] == "success"


def test_a_batch_pairs_within_itself(client, headers):
    """The command hook delivers its spool as one array: starts are not stored yet."""
    response = post(client, headers, [stamped("pre_tool_use_grep", 0), stamped("post_tool_use_grep", 0.5)])
    assert response.status_code == 201 and "Location" not in response.headers
    by_type = {e["type"]: e for e in session_events(client, headers)}
    assert by_type["claude.tool.completed"]["duration_ms"] == 500
    assert post(client, headers, [stamped("pre_tool_use_grep", 0)]).status_code == 200  # all duplicates


def test_a_retried_delivery_is_stored_once(client, headers):
    for name in EXPECTED:
        first = post(client, headers, load(name))
        again = post(client, headers, load(name))
        assert (first.status_code, again.status_code) == (201, 200), name
        assert first.headers["Location"] == again.headers["Location"]
    # Key order does not make a payload new.
    reordered = dict(reversed(list(load("stop").items())))
    assert post(client, headers, reordered).status_code == 200
    assert len(session_events(client, headers)) == len(EXPECTED)


def test_the_hooks_stamp_tells_identical_payloads_apart(client, headers):
    """An HTTP hook's repeat of a byte-identical payload is one event; the
    command hook stamps each run, so two idle notifications are two."""
    assert post(client, headers, stamped("notification", 1)).status_code == 201
    assert post(client, headers, stamped("notification", 61)).status_code == 201
    assert post(client, headers, stamped("notification", 61)).status_code == 200


def test_secrets_are_masked_before_storage(client, headers):
    read = stored(client, headers, post(client, headers, load("post_tool_use_read")))
    curl = stored(client, headers, post(client, headers, load("permission_request")))
    text = json.dumps([read, curl])
    for secret in ("Tr0ub4dor-and-3", "sk_live_51HxQ2bKc8vN3mPq7RtYw", "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ",
                   "sk-ant-api03-Xq9vR2mT7kLw4NpB8sYd3HfZ"):
        assert secret not in text
    content = read["data"]["tool_response"]["file"]["content"]
    assert f"postgresql://billing:{MASK}@db.internal" in content
    assert f"STRIPE_SECRET_KEY={MASK}" in content
    assert "LOG_LEVEL=info" in content  # what is not secret stays readable
    assert MASK in curl["title"] and MASK in curl["data"]["tool_input"]["command"]


def test_more_secret_patterns_come_from_config(app, client, headers):
    app.config["REDACT_PATTERNS"] = [r"ACME-\d{6}"]
    activity = stored(client, headers, post(client, headers, load(
        "user_prompt_submit", prompt="Why does licence ACME-123456 fail to activate?")))
    assert "ACME-123456" not in json.dumps(activity)
    assert activity["title"] == f"Prompt: Why does licence {MASK} fail to activate?"


def test_secrets_under_secret_keys_are_masked_whatever_they_look_like(client, headers):
    payload = load("pre_tool_use_bash", tool_input={"command": "deploy", "api_key": "plain", "env": {"password": "x"}})
    activity = stored(client, headers, post(client, headers, payload))
    assert activity["data"]["tool_input"] == {"command": "deploy", "api_key": MASK, "env": {"password": MASK}}


def test_long_fields_are_cut_to_the_configured_size(app, client, headers):
    app.config["CLAUDE_CODE_MAX_FIELD_CHARS"] = 100
    payload = load("post_tool_use_read")
    payload["tool_response"]["file"]["content"] = "x" * 5000
    read = stored(client, headers, post(client, headers, payload))
    assert read["data"]["tool_response"]["file"]["content"] == "x" * 100 + "… [4900 characters cut]"
    prompt = "Refactor the billing module. " * 400
    asked = stored(client, headers, post(client, headers, load("user_prompt_submit", prompt=prompt)))
    assert len(asked["data"]["prompt"]) < 130 and len(asked["title"]) <= 300


def test_bodies_beyond_the_api_limit_are_taken_and_cut(client, headers):
    """Tool responses can be large; the hook endpoint takes up to 8 MiB and stores at most 64 KiB."""
    payload = load("post_tool_use_read")
    payload["tool_response"]["file"]["content"] = "line of a big file\n" * 150_000  # ~2.8 MB
    activity = stored(client, headers, post(client, headers, payload))
    assert len(json.dumps(activity["data"])) < 64 * 1024
    many = load("post_tool_use_grep", tool_use_id="toolu_many")
    many["tool_response"]["filenames"] = [f"src/module_{i}/" + "deep/" * 30 + "file.py" for i in range(2000)]
    assert post(client, headers, many).status_code == 201


def test_unknown_events_store_under_their_own_name(client, headers):
    for name, activity_type in (("TeammateJoined", "claude.teammate_joined"), ("FileRenamed", "claude.file_renamed"),
                                ("InstructionsUnloaded", "claude.instructions_unloaded"), ("odd name!", "claude.odd_name"),
                                ("Ünïcode", "claude.n_code")):
        activity = stored(client, headers, post(client, headers, load("task_created", hook_event_name=name)))
        assert activity["type"] == activity_type, name


def test_a_session_reads_in_event_order(client, headers):
    """`sequence` is the event's time: spooled events delivered late still sort where they happened."""
    order = ["session_start", "user_prompt_submit", "pre_tool_use_bash", "post_tool_use_failure", "stop"]
    for seconds, name in sorted(enumerate(order), key=lambda pair: -pair[0]):  # delivered newest first
        post(client, headers, stamped(name, seconds))
    events = sorted(session_events(client, headers), key=lambda e: e["sequence"])
    assert [e["data"]["hook_event_name"] for e in events] == [load(n)["hook_event_name"] for n in order]
    assert events[0]["occurred_at"] == "2026-11-20T10:00:00.000000Z"
    # Without a stamp the receive time stands in, so HTTP hooks order by arrival.
    first = stored(client, headers, post(client, headers, load("pre_compact")))
    second = stored(client, headers, post(client, headers, load("post_compact")))
    assert first["sequence"] < second["sequence"]


def test_what_is_refused(client, headers, make_token):
    def status(body=None, raw=None, with_headers=headers):
        data = raw if raw is not None else json.dumps(body)
        return client.post(HOOK, data=data, content_type="application/json", headers=with_headers).status_code

    assert status(raw=b"not json") == 400
    assert status(raw=b"") == 400
    assert status(raw=b'{"hook_event_name": NaN}') == 400
    assert status([]) == 422
    assert status([1]) == 422
    assert status({}) == 422
    assert status({"hook_event_name": 5}) == 422
    assert status([load("stop")] * 1001) == 422
    assert status(load("stop"), with_headers={}) == 401
    assert status(load("stop"), with_headers=make_token("acme", "read")) == 403
    assert status(raw=b'{"hook_event_name": "Stop", "x": "' + b"a" * (9 * 1024 * 1024) + b'"}') == 413


@pytest.mark.parametrize("payload", [
    {"hook_event_name": "PreToolUse", "tool_name": "Bash", "tool_input": "npm test"},
    {"hook_event_name": "PreToolUse", "tool_name": ["Bash"], "tool_input": {"command": ["npm", "test"]}},
    {"hook_event_name": "Pre\u0000ToolUse", "session_id": "s\u0000", "cwd": "/\u0000"},
    {"hook_event_name": "UserPromptSubmit", "session_id": 42, "prompt": {"text": "hi"}, "cwd": ["/x"]},
    {"hook_event_name": "PostToolUse", "tool_use_id": "t" * 500, "tool_name": "x" * 500},
    {"hook_event_name": "x" * 5000},
    {"hook_event_name": "Notification", "message": "", "activityweb_occurred_at": "yesterday"},
    {"hook_event_name": "Stop", "activityweb_occurred_at": "2999-01-01T00:00:00Z", "big": 10 ** 300},
    {"hook_event_name": "Stop", "nested": json.loads("[" * 500 + "]" * 500)},
])
def test_odd_payloads_never_fail_the_server(client, headers, payload):
    response = post(client, headers, payload)
    assert response.status_code in (200, 201, 422), response.get_data(as_text=True)
