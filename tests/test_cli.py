"""flask seed / tenants / tokens, through the CLI runner."""
import sqlalchemy as sa

from activityweb import store
from activityweb.extensions import db
from activityweb.models import Activity


def test_tenants_and_tokens(app, runner, client):
    assert runner.invoke(args=["tenants", "create", "acme", "--name", "Acme Corp"]).exit_code == 0
    again = runner.invoke(args=["tenants", "create", "acme"])
    assert again.exit_code != 0 and "already exists" in again.output
    bad = runner.invoke(args=["tenants", "create", "Not Valid"])
    assert bad.exit_code != 0

    result = runner.invoke(args=["tokens", "create", "--tenant", "acme", "--scopes", "ingest,read"])
    assert result.exit_code == 0
    secret = result.stdout.strip().splitlines()[0]
    assert secret.startswith("aw_")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.post("/api/v1/activities", json={"type": "a.b", "title": "t"}, headers=headers).status_code == 201

    listing = runner.invoke(args=["tokens", "list", "--tenant", "acme"])
    assert "acme" in listing.output and "ingest,read" in listing.output and "active" in listing.output
    assert secret not in listing.output

    token_id = listing.output.strip().splitlines()[1].split("\t")[0]
    assert runner.invoke(args=["tokens", "revoke", token_id]).exit_code == 0
    assert "revoked" in runner.invoke(args=["tokens", "list"]).output
    assert client.get("/api/v1/activities", headers=headers).status_code == 401

    assert runner.invoke(args=["tokens", "create", "--tenant", "nope"]).exit_code != 0
    assert runner.invoke(args=["tokens", "create", "--tenant", "acme", "--scopes", "root"]).exit_code != 0
    assert runner.invoke(args=["tokens", "revoke", "999"]).exit_code != 0


def test_seed_makes_realistic_data(app, runner):
    result = runner.invoke(args=["seed", "--events", "3000", "--seed", "7"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert store.count_activities(1) == 3000
        sources = set(db.session.execute(sa.select(Activity.source).distinct()).scalars())
        assert {"claude_code", "api", "github", "hubspot", "system"} <= sources
        types = set(db.session.execute(sa.select(Activity.type).distinct()).scalars())
        assert {"claude.tool.started", "claude.tool.completed", "claude.prompt.submitted",
                "project.created", "github.push", "lead.high_intent"} <= types
        span = db.session.execute(sa.select(sa.func.min(Activity.occurred_at), sa.func.max(Activity.occurred_at))).one()
        assert (span[1] - span[0]).days >= 10
        # Paired tool calls share a correlation id and the completion has a duration.
        done = db.session.execute(sa.select(Activity).where(Activity.type == "claude.tool.completed").limit(1)).scalar_one()
        assert done.duration_ms is not None and done.correlation_id and done.session_id
    # --if-empty leaves a seeded tenant alone; a second plain seed adds more (fresh idempotency keys).
    assert "not seeding" in runner.invoke(args=["seed", "--if-empty"]).output
    assert runner.invoke(args=["seed", "--events", "10", "--seed", "7"]).exit_code == 0
    with app.app_context():
        assert store.count_activities(1) == 3010
