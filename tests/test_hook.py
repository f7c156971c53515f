"""hooks/activityweb_hook.py, run as Claude Code runs it: a subprocess with
the payload on stdin, against a real server that is down, then up."""
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from test_client import server, stored, token  # noqa: F401  (server and token are fixtures)

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "hooks" / "activityweb_hook.py"
FIXTURES = Path(__file__).parent / "fixtures" / "claude_code"

pytestmark = pytest.mark.server


def run_hook(payload, *, url: str, token: str, spool: Path, hook: Path = HOOK, isolated: bool = False,
             **env) -> tuple[subprocess.CompletedProcess, float]:
    """Run the hook; `isolated`: without site-packages, so an installed client is not found."""
    stdin = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    environment = {"ACTIVITYWEB_URL": url, "ACTIVITYWEB_TOKEN": token, "ACTIVITYWEB_SPOOL_DIR": str(spool),
                   "PATH": "/usr/bin:/bin", **env}
    began = time.monotonic()
    result = subprocess.run([sys.executable, *(["-S"] if isolated else []), str(hook)], input=stdin, env=environment,
                            capture_output=True, timeout=10)
    return result, time.monotonic() - began


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def spooled(spool: Path) -> list[dict]:
    path = spool / "claude-code.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_down_then_up_each_event_once_and_in_order(app, server, token, tmp_path):
    spool = tmp_path / "spool"
    names = ["user_prompt_submit", "pre_tool_use_bash", "post_tool_use_failure"]
    for name in names:
        result, seconds = run_hook(fixture(name), url=server.url, token=token, spool=spool)
        assert (result.returncode, result.stdout) == (0, b"")
        assert seconds < 1.5, f"{name} took {seconds:.2f}s with the server down"
    assert [p["hook_event_name"] for p in spooled(spool)] == ["UserPromptSubmit", "PreToolUse", "PostToolUseFailure"]
    assert all("activityweb_occurred_at" in p for p in spooled(spool))

    server.start()
    result, _ = run_hook(fixture("stop"), url=server.url, token=token, spool=spool)
    assert (result.returncode, result.stdout) == (0, b"")
    assert spooled(spool) == []
    events = sorted(stored(app, source="claude_code"), key=lambda e: e["sequence"])
    assert [e["type"] for e in events] == ["claude.prompt.submitted", "claude.tool.started", "claude.tool.failed",
                                           "claude.stop"]
    # Stamped when they happened, so the spooled pair still measures the tool call.
    assert events[2]["duration_ms"] is not None and events[2]["duration_ms"] >= 0
    assert events[2]["occurred_at"] < events[3]["occurred_at"]

    run_hook(fixture("session_end"), url=server.url, token=token, spool=spool)
    assert len(stored(app, source="claude_code")) == 5  # the spool was delivered once


def test_a_server_that_never_answers_still_costs_under_a_second_and_a_half(token, tmp_path):
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        for name in ("pre_tool_use_bash", "post_tool_use_failure"):
            result, seconds = run_hook(fixture(name), url=url, token=token, spool=tmp_path)
            assert (result.returncode, result.stdout) == (0, b"")
            assert seconds < 1.5, f"took {seconds:.2f}s"
    assert len(spooled(tmp_path)) == 2


def test_a_refused_token_keeps_events_until_it_is_fixed(app, server, token, tmp_path):
    server.start()
    result, _ = run_hook(fixture("notification"), url=server.url, token="aw_not-a-token", spool=tmp_path)
    assert result.returncode == 0 and len(spooled(tmp_path)) == 1
    run_hook(fixture("stop"), url=server.url, token=token, spool=tmp_path)
    assert {e["type"] for e in stored(app, source="claude_code")} == {"claude.notification", "claude.stop"}


def test_what_is_not_a_hook_event_is_dropped_quietly(server, token, tmp_path):
    for stdin in (b"", b"not json", b"[1, 2]", b'{"no": "event name"}'):
        result, _ = run_hook(stdin, url=server.url, token=token, spool=tmp_path)
        assert (result.returncode, result.stdout) == (0, b"")
    assert spooled(tmp_path) == []


def test_the_spool_is_bounded(server, token, tmp_path):
    for _ in range(4):
        run_hook(fixture("pre_tool_use_edit"), url=server.url, token=token, spool=tmp_path,
                 ACTIVITYWEB_SPOOL_MAX_BYTES="2000")
    assert (tmp_path / "claude-code.jsonl").stat().st_size <= 2000
    assert 1 <= len(spooled(tmp_path)) < 4


def test_concurrent_hooks_deliver_the_spool_once(app, server, token, tmp_path):
    """Parallel tool calls fire their hooks at once; only one of them delivers the spool."""
    for name in ("pre_tool_use_grep", "post_tool_use_grep", "pre_tool_use_read", "post_tool_use_read"):
        run_hook(fixture(name), url=server.url, token=token, spool=tmp_path)
    assert len(spooled(tmp_path)) == 4
    server.start()
    names = ["pre_tool_use_edit", "post_tool_use_edit", "subagent_start", "subagent_stop", "stop"]
    threads = [threading.Thread(target=run_hook, args=(fixture(n),),
                                kwargs={"url": server.url, "token": token, "spool": tmp_path}) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # A hook past its time budget on a busy machine spools its event, and the
    # server may still have stored it: at least once, never lost.
    assert len(stored(app, source="claude_code")) + len(spooled(tmp_path)) >= 9
    # The next hooks deliver whatever is left; the server stores each event once.
    for _ in range(5):
        run_hook(fixture("session_end"), url=server.url, token=token, spool=tmp_path)
        if not spooled(tmp_path):
            break
    ids = [e["source_id"] for e in stored(app, source="claude_code")]
    assert len(ids) == len(set(ids)) == 10
    assert spooled(tmp_path) == []


def test_settings_for_both_styles(runner):
    http = json.loads(runner.invoke(args=["claude-code", "settings", "--url", "https://aw.example.com/"]).stdout)
    assert http["env"] == {"ACTIVITYWEB_URL": "https://aw.example.com"}
    tool_hook = http["hooks"]["PreToolUse"][0]["hooks"][0]
    assert tool_hook["type"] == "http"
    assert tool_hook["url"] == "https://aw.example.com/api/v1/integrations/claude-code"
    assert tool_hook["headers"] == {"Authorization": "Bearer $ACTIVITYWEB_TOKEN"}
    assert tool_hook["allowedEnvVars"] == ["ACTIVITYWEB_TOKEN"]
    # Claude Code runs only command hooks on SessionStart.
    assert http["hooks"]["SessionStart"][0]["hooks"][0]["type"] == "command"
    assert {"PostToolUseFailure", "PermissionDenied", "StopFailure", "SubagentStart", "PostCompact"} <= set(http["hooks"])

    command = json.loads(runner.invoke(args=["claude-code", "settings", "--style", "command"]).stdout)
    handlers = [group["hooks"][0] for groups in command["hooks"].values() for group in groups]
    assert {h["type"] for h in handlers} == {"command"}
    assert handlers[0]["command"] == f"python3 {HOOK}"
    assert command["env"] == {"ACTIVITYWEB_URL": "http://127.0.0.1:5000"}


def test_uninstalled_it_finds_the_client_in_the_checkout(app, server, token, tmp_path):
    server.start()
    result, seconds = run_hook(fixture("stop"), url=server.url, token=token, spool=tmp_path, isolated=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert [e["type"] for e in stored(app, source="claude_code")] == ["claude.stop"]


def test_a_copy_beside_the_client_package_works_on_its_own(app, server, token, tmp_path):
    """Copied out of the repository next to activityweb_client/, uninstalled: there
    is no checkout to fall back on, so only the package beside it can deliver."""
    alone = tmp_path / "hooks"
    alone.mkdir()
    shutil.copy(HOOK, alone / HOOK.name)
    shutil.copytree(ROOT / "clients" / "python" / "activityweb_client", alone / "activityweb_client")
    server.start()
    result, _ = run_hook(fixture("stop"), url=server.url, token=token, spool=tmp_path / "spool",
                         hook=alone / HOOK.name, isolated=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert [e["type"] for e in stored(app, source="claude_code")] == ["claude.stop"]
