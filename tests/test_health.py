"""Liveness, readiness, and migrations from empty on both databases."""
import functools
import sqlalchemy as sa

from activityweb.extensions import db


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_readyz_when_migrated(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_503_when_not_migrated(tmp_path):
    from activityweb.app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'empty.db'}", "SECRET_KEY": "x"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "database not ready" in response.get_json()["status"]


def test_readyz_503_when_behind(app, client):
    with app.app_context():
        db.session.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
        db.session.commit()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "migrations pending" in response.get_json()["status"]


def test_migrations_upgrade_from_empty_and_back(backend, tmp_path, request):
    """Upgrade an empty database to head, check the schema, downgrade to empty, upgrade again."""
    from flask_migrate import downgrade, upgrade

    from activityweb.app import create_app
    from conftest import config_for

    if backend == "sqlite":
        uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        import psycopg

        base = request.getfixturevalue("pg_url")
        url = sa.engine.make_url(base)
        name = url.database + "_mig"
        admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        uri = url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    config = config_for("sqlite", tmp_path, request)
    config["SQLALCHEMY_DATABASE_URI"] = uri
    app = create_app(config)
    with app.app_context():
        upgrade()
        inspector = sa.inspect(db.engine)
        assert {"tenants", "api_tokens", "activities"} <= set(inspector.get_table_names())
        indexes = {i["name"] for i in inspector.get_indexes("activities")}
        assert {"ix_activities_feed", "ix_activities_type", "ix_activities_conversation"} <= indexes
        downgrade(revision="base")
        assert "activities" not in sa.inspect(db.engine).get_table_names()
        upgrade()
        assert "activities" in sa.inspect(db.engine).get_table_names()
        db.engine.dispose()
    if backend == "postgresql":
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_models_match_migrations(app):
    """`flask db check`: the models and the migrations describe the same schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from activityweb.models import include_in_autogenerate

    with app.app_context(), db.engine.connect() as conn:
        include = functools.partial(include_in_autogenerate, dialect=conn.dialect.name)
        context = MigrationContext.configure(conn, opts={"include_object": include})
        assert compare_metadata(context, db.metadata) == []
