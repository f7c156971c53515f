"""The OTLP/HTTP receiver, replaying what the real Claude Code 2.1.332 exported
(tests/fixtures/otlp/, README there) beside the hook payloads of the same
sessions (tests/fixtures/claude_code/session_otel/)."""
import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest, ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

FIXTURES = Path(__file__).parent / "fixtures"
OTLP = FIXTURES / "otlp"
EXPECTED = json.loads((OTLP / "expected.json").read_text())
BASE = "/api/v1/otlp"
HOOK = "/api/v1/integrations/claude-code"


def exports(run: str) -> list[tuple[dict, bytes]]:
    """Each recorded request of a run, in arrival order: its meta and body."""
    found = []
    for meta_path in sorted((OTLP / run).glob("*.meta.json")):
        meta = json.loads(meta_path.read_text())
        found.append((meta, (OTLP / run / meta["file"]).read_bytes()))
    return found


def post_export(client, headers, meta: dict, body: bytes):
    sent = {**headers, "Content-Type": meta["content_type"]}
    if meta.get("content_encoding"):
        sent["Content-Encoding"] = meta["content_encoding"]
    return client.post(BASE + meta["path"], data=body, headers=sent)


def replay(client, headers, run: str) -> None:
    for meta, body in exports(run):
        response = post_export(client, headers, meta, body)
        assert response.status_code == 200, (meta["file"], response.get_data(as_text=True)[:300])
        assert response.content_type == meta["content_type"]


def post_hooks(client, headers, run: str) -> None:
    folder = FIXTURES / "claude_code" / "session_otel" / run
    index = json.loads((FIXTURES / "claude_code" / "session_otel" / f"{run}.index.json").read_text())
    payloads = []
    for entry in index:
        payload = json.loads((folder / entry["file"]).read_text())
        payload["activityweb_occurred_at"] = entry["received_at"]  # as the command hook stamps it
        payloads.append(payload)
    response = client.post(HOOK, data=json.dumps(payloads), content_type="application/json", headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)


@pytest.fixture
def headers(make_token):
    return make_token("acme", "ingest,read")


def sessions(run: str) -> dict:
    return EXPECTED["runs"][run]["sessions"]


def main_session(run: str) -> tuple[str, dict]:
    return max(sessions(run).items(), key=lambda kv: kv[1]["api_request_events"]["count"])


def picos(text: str) -> int:
    return int((Decimal(text) * 10**12).to_integral_value())


@pytest.mark.parametrize("run", ["protobuf", "json", "protobuf-gzip"])
def test_cost_and_tokens_add_up_to_the_exported_sums(app, client, headers, run):
    replay(client, headers, run)
    from activityweb import store
    from activityweb.costs import COST, TOKENS

    tenant = None
    with app.app_context():
        tenant = store.find_tenant("acme").id
        for session_id, expected in sessions(run).items():
            totals = store.usage.metric_totals(tenant, session_id)
            metrics = expected["metrics"]
            assert totals[(COST, "")] == picos(metrics["total"]["cost_usd_exact"]), session_id
            for kind, count in metrics["total"]["tokens"].items():
                assert totals[(TOKENS, kind)] == count, (session_id, kind)
            for name, by_kind in expected["other_metrics"].items():
                for kind, value in by_kind.items():
                    scale = 10**6 if name.endswith("active_time.total") else 1
                    assert totals[(name, kind)] == round(value * scale), (name, kind)
            usage = store.usage.session_usage(tenant, [session_id])[session_id]
            assert usage.cost == Decimal(picos(metrics["total"]["cost_usd_exact"])) / 10**12
            assert round(float(usage.cost), 7) == round(metrics["total"]["cost_usd"], 7)
            for model, by_model in metrics["by_model"].items():
                assert usage.by_model[model].tokens == by_model["tokens"], model
                assert usage.by_model[model].cost == Decimal(picos(by_model["cost_usd_exact"])) / 10**12, model
        by_day = dict(store.usage.usage_by(tenant, "day"))
        for day, expected_day in main_session(run)[1]["metrics"]["by_day"].items():
            all_sessions = sum(s["metrics"]["by_day"].get(day, {}).get("tokens", {}).get("input", 0)
                               for s in sessions(run).values())
            assert by_day[day].tokens["input"] == all_sessions
        by_model = dict(store.usage.usage_by(tenant, "model"))
        assert set(by_model) == {"claude-sonnet-5-5", "claude-haiku-5-5"}


@pytest.mark.parametrize("run", ["protobuf", "json"])
def test_the_api_request_events_agree_with_the_metrics(client, headers, run):
    replay(client, headers, run)
    session_id, expected = main_session(run)
    page = client.get(f"/api/v1/activities?session_id={session_id}&type=claude.otel.api_request&limit=200",
                      headers=headers).get_json()["items"]
    assert len(page) == expected["api_request_events"]["count"]
    assert sum(e["data"]["cost_usd_micros"] for e in page) == expected["api_request_events"]["cost_usd_micros"]
    assert sum(e["data"]["input_tokens"] for e in page) == expected["api_request_events"]["total"]["tokens"]["input"]
    # Every event carries the turn it belongs to.
    assert {e["request_id"] for e in page} <= set(expected["prompt_ids"])


def test_a_resent_batch_is_stored_once(app, client, headers):
    replay(client, headers, "protobuf")
    session_id, expected = main_session("protobuf")
    first = client.get(f"/api/v1/activities?session_id={session_id}&limit=200", headers=headers).get_json()["items"]
    replay(client, headers, "protobuf")
    again = client.get(f"/api/v1/activities?session_id={session_id}&limit=200", headers=headers).get_json()["items"]
    assert [e["id"] for e in again] == [e["id"] for e in first]
    from activityweb import store
    from activityweb.costs import COST

    with app.app_context():
        totals = store.usage.metric_totals(store.find_tenant("acme").id, session_id)
    assert totals[(COST, "")] == picos(expected["metrics"]["total"]["cost_usd_exact"])


def test_the_same_batch_as_json_and_protobuf_is_one(app, client, headers):
    """A batch decoded either way is the same records: resent in the other encoding, still stored once."""
    meta, body = next((m, b) for m, b in exports("protobuf") if m["path"] == "/v1/logs")
    message = ExportLogsServiceRequest()
    message.ParseFromString(body)
    assert post_export(client, headers, meta, body).status_code == 200
    count = len(client.get("/api/v1/activities?source=claude_code_otel&limit=200", headers=headers).get_json()["items"])
    as_json = json_format.MessageToJson(message).encode()
    assert post_export(client, headers, {"path": "/v1/logs", "content_type": "application/json"}, as_json).status_code == 200
    assert len(client.get("/api/v1/activities?source=claude_code_otel&limit=200",
                          headers=headers).get_json()["items"]) == count > 0


@pytest.mark.parametrize("run", ["protobuf", "json"])
def test_hooks_and_telemetry_join_into_one_timeline(client, headers, run):
    post_hooks(client, headers, run)
    replay(client, headers, run)
    session_id, expected = main_session(run)
    events = client.get(f"/api/v1/activities?conversation_id={session_id}&limit=200", headers=headers).get_json()["items"]
    hooks = [e for e in events if e["source"] == "claude_code"]
    otel = [e for e in events if e["source"] == "claude_code_otel"]
    assert hooks and otel
    # One session id, one set of turns and tool calls, from both producers.
    assert {e["request_id"] for e in otel if e["request_id"]} == set(expected["prompt_ids"])
    assert {e["request_id"] for e in hooks if e["request_id"]} >= set(expected["hook_prompt_ids"])
    tool_ids = set(expected["tool_use_ids"])
    assert {e["correlation_id"] for e in otel if e["correlation_id"]} == tool_ids
    assert {e["correlation_id"] for e in hooks if e["type"] == "claude.tool.started"} <= tool_ids
    timeline = client.get(f"/api/v1/conversations/{session_id}", headers=headers).get_json()
    assert timeline["usage"]["cost_usd"] == expected["metrics"]["total"]["cost_usd"]
    turns = timeline["turns"]
    assert [t["prompt_id"] for t in turns if t["prompt_id"]] == expected["prompt_ids"]
    assert round(sum(t["usage"]["cost_usd"] for t in turns if t["usage"]), 7) == expected["api_request_events"]["total"]["cost_usd"]
    first = turns[[t["prompt_id"] for t in turns].index(expected["prompt_ids"][0])]
    assert set(first["usage"]["by_model"]) == {"claude-sonnet-5-5", "claude-haiku-5-5"}
    # A tool call from the hooks carries its telemetry (the tool_result with the same tool_use_id).
    tool_steps = [s for t in turns for s in walk(t["steps"]) if s["kind"] == "tool" and s["event"]["source"] == "claude_code"]
    assert any(any(x["type"] == "claude.otel.tool_result" for x in s["telemetry"]) for s in tool_steps)
    # No telemetry event about a hook-seen tool call stands as a step of its own.
    hook_tools = {s["event"]["correlation_id"] for s in tool_steps} - {None}
    loose = [s for t in turns for s in walk(t["steps"]) if s["event"]["source"] == "claude_code_otel"]
    assert not [(s["event"]["type"], s["event"]["correlation_id"]) for s in loose if s["event"]["correlation_id"] in hook_tools]


def walk(steps):
    for step in steps:
        yield step
        yield from walk(step["steps"])


def test_answers_are_otlp_responses(client, headers):
    meta, body = next((m, b) for m, b in exports("protobuf") if m["path"] == "/v1/metrics")
    response = post_export(client, headers, meta, body)
    parsed = ExportMetricsServiceResponse()
    parsed.ParseFromString(response.get_data())
    assert not parsed.HasField("partial_success")
    meta, body = next((m, b) for m, b in exports("json") if m["path"] == "/v1/logs")
    response = post_export(client, headers, meta, body)
    assert response.get_json() == {}


def test_records_that_are_not_claude_codes_are_a_partial_success(client, headers):
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1796197714904000000", "body": {"stringValue": "GET /health 200"}},
        {"timeUnixNano": "1796197714904000000", "body": {"stringValue": "claude_code.user_prompt"},
         "attributes": [{"key": "session.id", "value": {"stringValue": "s-1"}},
                        {"key": "event.name", "value": {"stringValue": "user_prompt"}},
                        {"key": "prompt_length", "value": {"intValue": 12}}]},
    ]}]}]}
    response = client.post(BASE + "/v1/logs", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"})
    answer = json_format.Parse(response.get_data(as_text=True), ExportLogsServiceResponse())
    assert answer.partial_success.rejected_log_records == 1
    assert "claude_code" in answer.partial_success.error_message
    stored = client.get("/api/v1/activities?session_id=s-1", headers=headers).get_json()["items"]
    assert [e["title"] for e in stored] == ["Prompt (12 characters, not logged)"]


def test_cumulative_sums_are_rejected_not_double_counted(client, headers):
    point = {"timeUnixNano": "1796197714904000000", "asDouble": 0.5,
             "attributes": [{"key": "session.id", "value": {"stringValue": "s-2"}}]}
    body = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "claude_code.cost.usage", "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [point]}},
    ]}]}]}
    response = client.post(BASE + "/v1/metrics", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"})
    answer = json_format.Parse(response.get_data(as_text=True), ExportMetricsServiceResponse())
    assert answer.partial_success.rejected_data_points == 1
    assert "delta" in answer.partial_success.error_message


def test_secrets_are_masked_and_fields_cut(app, client, headers):
    app.config["CLAUDE_CODE_MAX_FIELD_CHARS"] = 100
    secret = "sk-ant-api03-" + "B" * 90
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1796197714904000000", "body": {"stringValue": "claude_code.user_prompt"},
         "attributes": [{"key": "session.id", "value": {"stringValue": "s-3"}},
                        {"key": "prompt", "value": {"stringValue": f"use {secret} " + "x" * 500}}]}]}]}]}
    client.post(BASE + "/v1/logs", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"})
    [event] = client.get("/api/v1/activities?session_id=s-3", headers=headers).get_json()["items"]
    assert secret not in json.dumps(event)
    assert len(event["data"]["prompt"]) < 200


def test_what_is_refused(app, client, headers, make_token):
    meta, body = next((m, b) for m, b in exports("protobuf") if m["path"] == "/v1/logs")
    assert client.post(BASE + "/v1/logs", data=body, headers={"Content-Type": meta["content_type"]}).status_code == 401
    reader = make_token("acme", "read")
    assert post_export(client, reader, meta, body).status_code == 403
    bad = client.post(BASE + "/v1/logs", data=b"\xff\x00garbage", headers={**headers, "Content-Type": meta["content_type"]})
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_body"
    assert client.post(BASE + "/v1/logs", data=body, headers={**headers, "Content-Type": "text/plain"}).status_code == 415
    not_gzip = client.post(BASE + "/v1/logs", data=body, headers={**headers, "Content-Type": meta["content_type"],
                                                                 "Content-Encoding": "gzip"})
    assert not_gzip.status_code == 400
    app.config["OTLP_MAX_BODY"] = 10_000
    bomb = gzip.compress(b"\x00" * 1_000_000)
    too_big = client.post(BASE + "/v1/logs", data=bomb, headers={**headers, "Content-Type": meta["content_type"],
                                                                "Content-Encoding": "gzip"})
    assert too_big.status_code == 413
    assert client.post(BASE + "/v1/metrics", data=b"{\"resourceMetrics\": 5}",
                       headers={**headers, "Content-Type": "application/json"}).status_code == 400


def test_the_settings_print_the_otel_env_block(runner):
    result = runner.invoke(args=["claude-code", "settings", "--otel", "--url", "https://aw.example", "--token", "aw_x"])
    assert result.exit_code == 0, result.output
    env = json.loads(result.stdout)["env"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://aw.example" + BASE
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "Authorization=Bearer aw_x"
    assert env["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1" and env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"


@pytest.fixture
def web(local_app):
    return local_app.test_client()


def test_pages_show_cost_where_telemetry_came_and_how_to_get_it_where_not(web):
    post_hooks(web, {}, "json")
    session_id, expected = main_session("json")
    before = web.get(f"/conversations/{session_id}").get_data(as_text=True)
    assert "Cost and tokens need Claude Code" in before and "OTEL_EXPORTER_OTLP_ENDPOINT" in before
    replay(web, {}, "json")
    page = web.get(f"/conversations/{session_id}").get_data(as_text=True)
    assert "Cost and tokens need" not in page
    assert f'data-cost-usd="{Decimal(expected["metrics"]["total"]["cost_usd_exact"]).quantize(Decimal("1e-12")).normalize()}"' in page
    assert page.count('class="turn"') >= 3 and 'data-model="claude-haiku-5-5"' in page
    assert 'class="step-telemetry"' in page
    listing = web.get("/conversations").get_data(as_text=True)
    assert "$0.1276" in listing
    stats = web.get("/stats").get_data(as_text=True)
    assert 'id="usage-stats"' in stats and "claude-sonnet-5-5" in stats and "billing-api" in stats
    assert "$0.1305" in stats  # both sessions: 0.1275886 + 0.0029584
    api = web.get("/api/v1/usage/stats").get_json()
    assert Decimal(api["total"]["cost_usd_exact"]) == Decimal("0.1275886") + Decimal("0.0029584")
    assert {row["model"] for row in api["by_model"]} == {"claude-sonnet-5-5", "claude-haiku-5-5"}
    assert [row["project"] for row in api["by_project"]] == ["billing-api"]
    assert web.get("/api/v1/usage/stats?nope=1").status_code == 400
    assert web.get("/api/v1/usage/stats?since=yesterday").status_code == 400
    hours = web.get("/api/v1/usage/stats?bucket=hour").get_json()
    assert hours["bucket"] == "hour" and all(p["at"].startswith("2026-12-02T07:") for p in hours["series"])
    assert sum(Decimal(p["cost_usd_exact"]) for p in hours["series"]) == Decimal("0.1305470")
    assert [p["at"] for p in api["series"]] == ["2026-12-02"]
    assert web.get("/api/v1/usage/stats?bucket=week").status_code == 400


ODD_LOG_RECORDS = [
    {"timeUnixNano": "9223372036854775807", "body": {"stringValue": "claude_code.user_prompt"}},
    {"timeUnixNano": "1", "body": {"stringValue": "claude_code.tool_result"},
     "attributes": [{"key": "duration_ms", "value": {"stringValue": "a while"}},
                    {"key": "session.id", "value": {"intValue": "42"}}]},
    {"body": {"stringValue": "claude_code.api_request"},
     "attributes": [{"key": "cost_usd", "value": {"stringValue": "free"}},
                    {"key": "model", "value": {"kvlistValue": {"values": [{"key": "a", "value": {"boolValue": True}}]}}},
                    {"key": "input_tokens", "value": {"doubleValue": 1e300}}]},
    {"body": {"stringValue": "claude_code." + "x" * 5000},
     "attributes": [{"key": "event.name", "value": {"arrayValue": {"values": [{"stringValue": "y"}]}}}]},
    {"body": {"stringValue": "claude_code.api_error"},
     "attributes": [{"key": "status_code", "value": {"stringValue": "\u0000" * 300}}]},
]


@pytest.mark.parametrize("record", ODD_LOG_RECORDS)
def test_odd_log_records_never_fail_the_server(client, headers, record):
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
    response = client.post(BASE + "/v1/logs", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("point", [
    {"timeUnixNano": "9223372036854775807", "asDouble": 1},
    {"timeUnixNano": "1796197714904000000", "asDouble": 1e300},
    {"timeUnixNano": "1796197714904000000", "asInt": "9223372036854775807"},
    {"timeUnixNano": "1796197714904000000"},
])
def test_odd_metric_points_are_rejected_or_taken_never_a_500(client, headers, point):
    body = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
        {"name": "claude_code.token.usage", "sum": {"aggregationTemporality": 1, "dataPoints": [point]}}]}]}]}
    response = client.post(BASE + "/v1/metrics", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_usage_points_expire_with_the_tenants_retention(app, client, headers):
    replay(client, headers, "protobuf")
    from datetime import datetime, timezone

    from activityweb import store

    with app.app_context():
        tenant = store.find_tenant("acme").id
        session_id, _ = main_session("protobuf")
        assert store.usage.metric_totals(tenant, session_id)
        store.set_retention(tenant, 30)
        store.prune(tenant, now=datetime(2026, 12, 20, tzinfo=timezone.utc))  # 18 days on: kept
        assert store.usage.metric_totals(tenant, session_id)
        store.prune(tenant, now=datetime(2027, 1, 10, tzinfo=timezone.utc))  # 39 days on: gone
        assert store.usage.metric_totals(tenant, session_id) == {}


def test_usage_by_project_takes_each_sessions_first_project(app):
    """A session's project is that of its first hook event that names one: a
    later `cd` into a subdirectory, or another source's event, does not move it."""
    from datetime import datetime, timedelta, timezone

    from activityweb import store
    from activityweb.costs import COST
    from activityweb.schemas import ActivityIn

    from conftest import event

    at = datetime(2026, 12, 2, 7, 0, tzinfo=timezone.utc)
    with app.app_context():
        tenant = store.create_tenant("usage-projects").id
        store.add_activities(tenant, [ActivityIn.model_validate(e).model_dump() for e in [
            event(source="claude_code", source_id="a1", conversation_id="s-a", occurred_at=at),  # no project yet
            event(source="claude_code", source_id="a2", conversation_id="s-a", project="billing-api",
                  occurred_at=at + timedelta(minutes=1)),
            event(source="claude_code", source_id="a3", conversation_id="s-a", project="billing-api/web",
                  occurred_at=at + timedelta(minutes=2)),
            event(source="github", source_id="b0", conversation_id="s-b", project="not-this",
                  occurred_at=at - timedelta(minutes=5)),
            event(source="claude_code", source_id="b1", conversation_id="s-b", project="web",
                  occurred_at=at),
        ]])

        def point(key, session, value):
            return {"point_key": key, "metric": COST, "kind": "", "session_id": session, "model": "m",
                    "actor_id": None, "query_source": None, "day": at.date(), "occurred_at": at, "value": value}
        store.usage.add_points(tenant, [point("p1", "s-a", 5), point("p2", "s-a", 7), point("p3", "s-b", 3),
                                        point("p4", "s-c", 2)])
        by_project = {project: usage.cost for project, usage in store.usage.usage_by(tenant, "project")}
    assert by_project == {"billing-api": Decimal(12) / 10**12, "web": Decimal(3) / 10**12, None: Decimal(2) / 10**12}
