"""Realistic demo events for `flask seed`: what a small team's fortnight looks like.

Claude Code sessions (prompts, paired tool calls with durations, failures),
project-console actions, CRM leads, GitHub activity and system events, spread
over working hours of the last 14 days. Events come out in the canonical
shape `store` writes, so a million of them load without per-event validation.
"""
from __future__ import annotations

import os
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterator

from .schemas import ActivityIn

PEOPLE = [
    ("u-alice", "Alice Martin"), ("u-bob", "Bob Okafor"), ("u-chen", "Chen Wei"),
    ("u-dana", "Dana Kowalski"), ("u-emil", "Emil Sørensen"), ("u-fatima", "Fatima Haddad"),
]
PROJECTS = ["billing-api", "web-console", "ingest-worker", "mobile-app", "data-pipeline"]
ENVIRONMENTS = ["development", "staging", "production"]
PROMPTS = [
    "Add pagination to the users endpoint",
    "Why does the login test fail on CI?",
    "Refactor the invoice renderer into smaller functions",
    "Write a migration that adds an index on orders.created_at",
    "Explain what this regex does and make it safer",
    "Bump the Flask version and fix the deprecation warnings",
    "Add a retry with backoff to the webhook sender",
    "Find where we leak database connections",
    "Make the dashboard load faster on slow networks",
    "Port the CSV export to stream rows instead of building a list",
]
FILES = ["src/app.py", "src/models.py", "src/api/users.py", "tests/test_users.py", "README.md",
         "migrations/versions/0042_orders.py", "web/static/app.js", "src/billing/invoice.py"]
COMMANDS = ["npm test", "pytest -q", "make lint", "git status", "git diff --stat", "ruff check .",
            "docker compose ps", "npm run build", "alembic upgrade head"]
COMPANIES = ["Acme Corp", "Globex", "Initech", "Umbrella Health", "Stark Logistics", "Wayne Foods",
             "Hooli", "Vandelay Imports"]
LEAD_NAMES = ["Jordan Lee", "Priya Raman", "Sam Carter", "Noor Aziz", "Lena Vogel", "Mateo Ruiz"]


# A posted event's defaults (ActivityIn's), so a generated event has every field.
_DEFAULTS = {name: None if f.is_required() else f.get_default() for name, f in ActivityIn.model_fields.items()
             if f.default_factory is None}
_FACTORIES = {name: f.default_factory for name, f in ActivityIn.model_fields.items() if f.default_factory}


def _event(**fields) -> dict:
    base = {**_DEFAULTS, **{name: make() for name, make in _FACTORIES.items()}}
    base.update(fields)
    # Fresh every run (not from rng): seeding twice must not collide on the idempotency key.
    base["source_id"] = base["source_id"] or os.urandom(16).hex()
    return base


def _working_moment(rng: random.Random, now: datetime, days: int) -> datetime:
    day = now - timedelta(days=rng.randrange(days))
    hour = min(23, max(0, int(rng.gauss(14, 3))))
    moment = day.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60),
                         microsecond=rng.randrange(1_000_000))
    if moment < now:
        return moment
    # Later today than now: somewhere earlier today instead (a clamp to just
    # before now would stack the day's later stories there).
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now - timedelta(seconds=rng.uniform(1, max(2.0, (now - midnight).total_seconds())))


def claude_session(rng: random.Random, start: datetime) -> list[dict]:
    actor_id, actor_name = rng.choice(PEOPLE)
    project = rng.choice(PROJECTS)
    session = str(uuid.UUID(int=rng.getrandbits(128)))
    t = start
    seq = 0
    events = []

    def add(**fields):
        nonlocal seq
        seq += 1
        events.append(_event(source="claude_code", session_id=session, conversation_id=session, sequence=seq,
                             project=project, occurred_at=t, **fields))

    def tool_call(tool: str, actor: tuple[str, str] = ("claude", "Claude")):
        """A tool call and its result; a Task call runs a subagent, which makes calls of its own."""
        nonlocal t
        if tool == "Bash":
            arg = rng.choice(COMMANDS)
            title = f"Bash: {arg}"
            tool_input = {"command": arg}
        elif tool == "Grep":
            arg = rng.choice(["TODO", "def handle_", "SELECT", "session.commit"])
            title = f"Grep: {arg}"
            tool_input = {"pattern": arg}
        elif tool == "Task":
            arg = "Explore the test suite"
            title = f"Task: {arg}"
            tool_input = {"description": arg, "subagent_type": "Explore"}
        else:
            arg = rng.choice(FILES)
            title = f"{tool} {arg}"
            tool_input = {"file_path": arg}
        tool_use = f"toolu_{rng.getrandbits(64):016x}"
        t += timedelta(seconds=rng.randint(1, 20))
        started = t
        add(type="claude.tool.started", title=title, actor_id=actor[0], actor_name=actor[1],
            entity_type="tool", entity_id=tool, entity_name=tool, status="started", correlation_id=tool_use,
            data={"hook_event_name": "PreToolUse", "tool_name": tool, "tool_input": tool_input,
                  "tool_use_id": tool_use})
        if tool == "Task":
            subagent()
        t += timedelta(milliseconds=int(rng.lognormvariate(6.5, 1.2)) if tool == "Bash" else rng.randint(5, 120))
        duration = (t - started) // timedelta(milliseconds=1)
        failed = tool == "Bash" and rng.random() < 0.12
        add(type="claude.tool.failed" if failed else "claude.tool.completed", title=title,
            actor_id=actor[0], actor_name=actor[1], entity_type="tool", entity_id=tool, entity_name=tool,
            status="failed" if failed else "success", duration_ms=duration, correlation_id=tool_use,
            priority="high" if failed else "normal",
            data={"hook_event_name": "PostToolUseFailure" if failed else "PostToolUse", "tool_name": tool,
                  "tool_use_id": tool_use, "tool_response": {"exit_code": 1 if failed else 0}})

    def subagent():
        """Claude Code names the subagent as the actor of the hooks that fire inside it."""
        nonlocal t
        agent = f"agent-{rng.getrandbits(32):08x}"
        t += timedelta(milliseconds=rng.randint(50, 400))
        common = dict(actor_id="claude", actor_name="Claude", entity_type="subagent", entity_id=agent,
                      entity_name="Explore", correlation_id=agent)
        add(type="claude.subagent.started", title="Subagent started: Explore", status="started",
            data={"hook_event_name": "SubagentStart", "agent_id": agent, "agent_type": "Explore"}, **common)
        began = t
        for _ in range(rng.randint(1, 3)):
            tool_call(rng.choice(["Read", "Grep"]), actor=(agent, "Explore"))
        t += timedelta(seconds=rng.randint(1, 10))
        add(type="claude.subagent.stopped", title="Subagent finished: Explore", status="success",
            duration_ms=(t - began) // timedelta(milliseconds=1), summary="Found the tests that cover this.",
            data={"hook_event_name": "SubagentStop", "agent_id": agent, "agent_type": "Explore",
                  "last_assistant_message": "Found the tests that cover this."}, **common)

    add(type="claude.session.started", title=f"Session started in {project}", actor_id=actor_id,
        actor_name=actor_name, entity_type="session", entity_id=session, entity_name=project,
        data={"hook_event_name": "SessionStart", "source": "startup", "cwd": f"/home/dev/{project}"})
    for _ in range(rng.randint(1, 3)):
        prompt = rng.choice(PROMPTS)
        t += timedelta(seconds=rng.randint(5, 90))
        add(type="claude.prompt.submitted", title=f"Prompt: {prompt}", summary=prompt, actor_id=actor_id,
            actor_name=actor_name, entity_type="prompt", data={"hook_event_name": "UserPromptSubmit", "prompt": prompt})
        for _ in range(rng.randint(2, 7)):
            tool_call(rng.choices(["Bash", "Edit", "Read", "Grep", "Write", "Task"], [5, 4, 4, 2, 1, 1])[0])
        t += timedelta(seconds=rng.randint(2, 30))
        reply = "Done. The change and its tests are in place."
        add(type="claude.stop", title="Claude finished responding", actor_id="claude", actor_name="Claude",
            entity_type="session", entity_id=session, status="success", summary=reply,
            data={"hook_event_name": "Stop", "last_assistant_message": reply})
    t += timedelta(seconds=rng.randint(10, 300))
    add(type="claude.session.ended", title="Session ended", actor_id=actor_id, actor_name=actor_name,
        entity_type="session", entity_id=session, data={"hook_event_name": "SessionEnd", "reason": "exit"})
    return events


def project_story(rng: random.Random, start: datetime) -> list[dict]:
    actor_id, actor_name = rng.choice(PEOPLE)
    project = rng.choice(PROJECTS)
    env = rng.choice(ENVIRONMENTS)
    request = f"req_{rng.getrandbits(48):012x}"
    common = dict(actor_id=actor_id, actor_name=actor_name, project=project, environment=env,
                  request_id=request, entity_type="project", entity_id=project, entity_name=project)
    t = start
    events = []
    kind = rng.choice(["created", "endpoints", "deploy", "deploy", "database"])
    if kind == "created":
        events.append(_event(type="project.created", title=f"Project '{project}' created", status="success",
                             summary=f"Project '{project}' created with container {rng.getrandbits(24):06x}",
                             occurred_at=t, tags=["project"], **common))
    elif kind == "database":
        db_name = f"{project.replace('-', '_')}_db"
        events.append(_event(type="database.created", title=f"Database {db_name} created", status="success",
                             summary=f"Database '{db_name}' created with 3 tables: users, posts, comments",
                             occurred_at=t, data={"tables": ["users", "posts", "comments"]}, tags=["database"], **common))
    elif kind == "endpoints":
        eps = rng.sample(["GET /api/users", "POST /api/users", "GET /api/orders", "DELETE /api/orders/{id}"], 2)
        events.append(_event(type="endpoints.added", title=f"Added {len(eps)} endpoints to {project}",
                             summary="Added: " + ", ".join(eps), status="success", occurred_at=t,
                             data={"endpoints": eps}, tags=["api"], **common))
    else:
        failed = rng.random() < 0.15
        duration = rng.randint(20_000, 240_000)
        events.append(_event(type="deployment.started", title=f"Deploying {project} to {env}", status="started",
                             occurred_at=t, correlation_id=request, tags=["deploy", env], **common))
        events.append(_event(type="deployment.failed" if failed else "deployment.succeeded",
                             title=f"Deploy of {project} to {env} {'failed' if failed else 'succeeded'}",
                             summary=(f"Deployed to https://{project}-{env}.fly.dev" if not failed
                                      else "Health check failed after 3 attempts"),
                             status="failed" if failed else "success", duration_ms=duration,
                             priority=("critical" if env == "production" else "high") if failed else "normal",
                             occurred_at=t + timedelta(milliseconds=duration), correlation_id=request,
                             tags=["deploy", env], **common))
    return events


def github_event(rng: random.Random, start: datetime) -> list[dict]:
    actor_id, actor_name = rng.choice(PEOPLE)
    repo = f"acme/{rng.choice(PROJECTS)}"
    kind = rng.choices(["push", "pr_opened", "pr_merged", "workflow", "release"], [6, 2, 2, 3, 1])[0]
    common = dict(source="github", actor_id=actor_id.removeprefix("u-"), actor_name=actor_name, project=repo.split("/")[1],
                  entity_type="repository", entity_id=repo, entity_name=repo, occurred_at=start)
    if kind == "push":
        n = rng.randint(1, 6)
        return [_event(type="github.push", title=f"Pushed {n} commit{'s' * (n > 1)} to {repo}:main",
                       data={"ref": "refs/heads/main", "commits": n}, tags=["git"], **common)]
    if kind in ("pr_opened", "pr_merged"):
        number = rng.randint(100, 999)
        verb = "opened" if kind == "pr_opened" else "merged"
        return [_event(type=f"github.pull_request.{verb}", title=f"PR #{number} {verb}: {rng.choice(PROMPTS)}",
                       data={"number": number}, tags=["pr"], **common)]
    if kind == "workflow":
        failed = rng.random() < 0.2
        return [_event(type="github.workflow_run.completed", title=f"CI {'failed' if failed else 'passed'} on {repo}",
                       status="failed" if failed else "success", duration_ms=rng.randint(60_000, 900_000),
                       priority="high" if failed else "normal", tags=["ci"], **common)]
    return [_event(type="github.release.published", title=f"Released {repo} v1.{rng.randint(0, 30)}.0",
                   tags=["release"], **common)]


def crm_event(rng: random.Random, start: datetime) -> list[dict]:
    company = rng.choice(COMPANIES)
    person = rng.choice(LEAD_NAMES)
    lead = f"lead-{rng.getrandbits(32):08x}"
    kind = rng.choices(["high_intent", "replied", "deal_won", "contact"], [3, 3, 1, 3])[0]
    if kind == "high_intent":
        opens = rng.randint(3, 9)
        return [_event(type="lead.high_intent", source="hubspot", title=f"High-intent lead: {person} at {company}",
                       summary=f"Opened the email {opens} times and visited pricing", priority="high",
                       entity_type="lead", entity_id=lead, entity_name=f"{person} ({company})", occurred_at=start,
                       data={"email_opens": opens, "pages": ["/pricing", "/security"]}, tags=["lead", "high-intent"])]
    if kind == "replied":
        return [_event(type="lead.replied", source="hubspot", title=f"{person} replied to the outreach email",
                       entity_type="lead", entity_id=lead, entity_name=f"{person} ({company})", occurred_at=start,
                       tags=["lead"])]
    if kind == "deal_won":
        amount = rng.randint(5, 120) * 1000
        return [_event(type="deal.won", source="salesforce", title=f"Deal won: {company} (${amount:,})",
                       priority="high", status="success", entity_type="opportunity", entity_id=f"006{lead[5:]}",
                       entity_name=company, occurred_at=start, data={"amount": amount, "currency": "USD"},
                       tags=["deal"])]
    return [_event(type="contact.created", source="hubspot", title=f"New contact: {person} ({company})",
                   entity_type="contact", entity_id=lead, entity_name=person, occurred_at=start, tags=["contact"])]


def system_event(rng: random.Random, start: datetime) -> list[dict]:
    kind = rng.choices(["backup", "alert", "cert", "scale"], [4, 2, 1, 2])[0]
    common = dict(source="system", actor_id="system", actor_name="System", occurred_at=start)
    if kind == "backup":
        return [_event(type="system.backup.completed", title="Nightly database backup completed", status="success",
                       duration_ms=rng.randint(30_000, 400_000), tags=["backup"], **common)]
    if kind == "alert":
        project = rng.choice(PROJECTS)
        return [_event(type="system.alert.triggered", title=f"Error rate above 5% on {project}", status="failed",
                       priority="critical", project=project, environment="production",
                       data={"error_rate": round(rng.uniform(5, 20), 1)}, tags=["alert"], **common)]
    if kind == "cert":
        return [_event(type="system.certificate.renewed", title="TLS certificate renewed for api.acme.dev",
                       status="success", tags=["tls"], **common)]
    return [_event(type="system.autoscale", title=f"Scaled ingest-worker to {rng.randint(2, 8)} instances",
                   project="ingest-worker", environment="production", tags=["scale"], **common)]


STORIES = [(claude_session, 45), (project_story, 20), (github_event, 15), (crm_event, 12), (system_event, 8)]


def demo_events(count: int, *, now: datetime | None = None, days: int = 14, seed: int | None = None) -> Iterator[dict]:
    """Yield exactly `count` events spread over the last `days` days."""
    rng = random.Random(seed)
    now = now or datetime.now(timezone.utc)
    makers, weights = zip(*STORIES)
    produced = 0
    while produced < count:
        maker = rng.choices(makers, weights)[0]
        story = maker(rng, _working_moment(rng, now, days))
        # A story that would run past now moves back whole, so its order and
        # spacing stay. (Clamping its tail to `now` stacked a tenth of a 10M
        # seed on one microsecond: every index page read had to sort that tie.)
        overshoot = max(e["occurred_at"] for e in story) - now
        if overshoot > timedelta(0):
            shift = overshoot + timedelta(seconds=rng.randrange(1, 120))
            for event in story:
                event["occurred_at"] -= shift
        for event in story:
            yield event
            produced += 1
            if produced >= count:
                return
