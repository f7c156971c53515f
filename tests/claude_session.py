"""A recorded Claude Code session, as hook payloads stamped with when each ran.

Built from the fixtures in tests/fixtures/claude_code/: a prompt, a failing
`npm test`, an edit, a Task call whose Explore subagent greps, and the reply.
"""
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"
SESSION = "6f1c2a9e-3b7d-4c8e-9a51-2d4e8f0b7c13"
HOOK = "/api/v1/integrations/claude-code"
T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)
AGENT = "agent-a8f3c21d"
TASK = "toolu_01TaskExplore000000000000"


def payload(name: str, at: float, **changes) -> dict:
    body = json.loads((FIXTURES / f"{name}.json").read_text())
    body.update(changes, activityweb_occurred_at=(T0 + timedelta(seconds=at)).isoformat())
    return body


def task(name: str, at: float) -> dict:
    return payload(name, at, tool_name="Task", tool_use_id=TASK,
                   tool_input={"description": "Find unpaginated endpoints", "subagent_type": "Explore"})


def recorded_session() -> list[dict]:
    return [
        payload("session_start", 0),
        payload("user_prompt_submit", 1),
        payload("pre_tool_use_bash", 2),
        payload("post_tool_use_failure", 6.25),  # npm test: 4,250 ms, failed
        payload("pre_tool_use_edit", 10),
        payload("post_tool_use_edit", 10.031),  # 31 ms
        task("pre_tool_use_bash", 12),
        payload("subagent_start", 12.5),
        payload("pre_tool_use_grep", 13, agent_id=AGENT, agent_type="Explore"),
        payload("post_tool_use_grep", 13.2, agent_id=AGENT, agent_type="Explore"),
        payload("subagent_stop", 20),
        task("post_tool_use_edit", 20.5),
        payload("stop", 25),
    ]
