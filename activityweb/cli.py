"""Operator commands: `flask seed`, `flask tenants ...`, `flask tokens ...`,
`flask integrations ...`, `flask claude-code settings`, `flask export`, `flask prune`,
`flask rollups rebuild`."""
from __future__ import annotations

import json
import sys
import time
from urllib.parse import parse_qsl

import click
from flask import Flask
from flask.cli import AppGroup, with_appcontext
from werkzeug.datastructures import MultiDict

from . import auth, export, store
from .config import PROJECT_ROOT
from .demo import demo_events
from .errors import InvalidQuery
from .filters import parse_filter
from .integrations import claude_code, claude_code_otel, signing


def _table(header: str, lines) -> None:
    """A tab-separated table: the header, then a line per row."""
    click.echo(header)
    for line in lines:
        click.echo(line)


def _tenant_or_fail(slug: str):
    tenant = store.find_tenant(slug)
    if tenant is None:
        raise click.ClickException(f"no tenant {slug!r}; create it with `flask tenants create {slug}`")
    return tenant


@click.command("seed")
@with_appcontext
@click.option("--events", "count", default=2000, show_default=True, type=click.IntRange(1, 100_000_000),
              help="How many demo events to add; on PostgreSQL millions load by COPY (see bench/scale.py).")
@click.option("--tenant", default=auth.DEFAULT_TENANT, show_default=True, help="Tenant slug; created if missing.")
@click.option("--days", default=14, show_default=True, type=click.IntRange(1, 365))
@click.option("--if-empty", is_flag=True, help="Do nothing if the tenant already has events (used by `make run`).")
@click.option("--seed", "random_seed", type=int, default=None, help="Random seed, for repeatable data.")
def seed_command(count: int, tenant: str, days: int, if_empty: bool, random_seed: int | None):
    """Add realistic demo activity for the last DAYS days."""
    target = store.get_or_create_tenant(tenant)
    if if_empty and store.count_activities(target.id):
        click.echo(f"tenant {tenant!r} already has events; not seeding")
        return
    started = time.perf_counter()
    events = demo_events(count, days=days, seed=random_seed)
    loaded = store.bulk_load(target.id, events)
    elapsed = time.perf_counter() - started
    click.echo(f"seeded {loaded} events into tenant {tenant!r} in {elapsed:.1f}s ({loaded / elapsed:,.0f}/s)")


@click.group("tenants", cls=AppGroup)
def tenants_group():
    """Create and list tenants."""


@tenants_group.command("create")
@click.argument("slug")
@click.option("--name", default=None, help="Display name (defaults to the slug).")
def tenants_create(slug: str, name: str | None):
    if store.find_tenant(slug):
        raise click.ClickException(f"tenant {slug!r} already exists")
    try:
        tenant = store.create_tenant(slug, name)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created tenant {tenant.slug!r}")


@tenants_group.command("list")
def tenants_list():
    for tenant in store.list_tenants():
        click.echo(f"{tenant.slug}\t{tenant.name}\t{store.count_activities(tenant.id)} events"
                   f"\tkept {tenant.retention_days} days")


@tenants_group.command("retention")
@click.argument("slug")
@click.argument("days", type=click.IntRange(1, 36_500))
@click.option("--restamp", is_flag=True,
              help="Give stored events the new expiry too; without it the period applies to events stored from now on.")
def tenants_retention(slug: str, days: int, restamp: bool):
    """Keep a tenant's events DAYS days (from when they occurred)."""
    restamped = store.set_retention(_tenant_or_fail(slug).id, days, restamp=restamp)
    click.echo(f"tenant {slug!r} keeps events {days} days" + (f"; {restamped} stored events restamped" if restamp else ""))


@click.command("prune")
@with_appcontext
@click.option("--tenant", default=None, help="Only this tenant (default: every tenant).")
@click.option("--batch-size", default=store.PRUNE_BATCH, show_default=True, type=click.IntRange(1, 100_000),
              help="Events deleted per transaction: writers wait for one batch at most.")
@click.option("--pause", default=0.0, show_default=True, type=click.FloatRange(0, 60),
              help="Seconds to rest between batches, to leave the database to others.")
def prune_command(tenant: str | None, batch_size: int, pause: float):
    """Delete expired events (see `flask tenants retention`): on PostgreSQL whole
    months first, once every event in them has expired, then the rest in small batches."""
    if not tenant:
        _drop_expired_partitions()
    targets = [_tenant_or_fail(tenant)] if tenant else store.list_tenants()
    for target in targets:
        pruned = store.prune(target.id, batch_size=batch_size, pause=pause)
        through = f", occurred up to {pruned.deleted_through:%Y-%m-%d %H:%M} UTC" if pruned.deleted_through else ""
        click.echo(f"{target.slug}: deleted {pruned.deleted} expired events in {pruned.batches} batches{through}")
    _compact_rollups()


def _compact_rollups() -> None:
    days = store.compact_rollups()
    if days:
        click.echo(f"rollups: summed {days} ended day(s) into daily rows")


def _drop_expired_partitions() -> None:
    for dropped in store.partitions.drop_expired():
        click.echo(f"dropped partition {dropped.name}: {dropped.events} expired events")


@click.group("partitions", cls=AppGroup)
def partitions_group():
    """PostgreSQL's monthly partitions of the events (nothing to do on SQLite)."""


@partitions_group.command("ensure")
def partitions_ensure():
    """Make the months ahead now (ingest and `flask prune` do it when due)."""
    made = store.partitions.ensure()
    click.echo(f"made {', '.join(made)}" if made else "every month ahead exists")


@partitions_group.command("list")
def partitions_list():
    """Each partition, its range and its size."""
    for part in store.partitions.describe():
        start = f"{part.start:%Y-%m-%d}" if part.start else "..."
        span = "default" if part.end is None else f"{start} to {part.end:%Y-%m-%d}"
        click.echo(f"{part.name}\t{span}\t~{part.events} events\t{part.size}")


@partitions_group.command("drop-expired")
def partitions_drop_expired():
    """Drop each month whose every event has expired (`flask prune` does this first)."""
    _drop_expired_partitions()


@click.group("tokens", cls=AppGroup)
def tokens_group():
    """Issue, list and revoke API tokens."""


@tokens_group.command("create")
@click.option("--tenant", required=True, help="Tenant slug the token acts for.")
@click.option("--scopes", default="ingest,read", show_default=True, help="Comma separated: ingest, read, admin.")
@click.option("--name", default="cli", show_default=True, help="What the token is for.")
def tokens_create(tenant: str, scopes: str, name: str):
    """Print a new token once; only its hash is kept."""
    target = _tenant_or_fail(tenant)
    try:
        token, secret = auth.create_token(target, name, [s.strip() for s in scopes.split(",") if s.strip()])
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(secret)
    click.echo(f"token {token.id} ({token.scopes}) for tenant {tenant!r}; it will not be shown again", err=True)


@tokens_group.command("list")
@click.option("--tenant", default=None, help="Only this tenant's tokens.")
def tokens_list(tenant: str | None):
    def line(token) -> str:
        last = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never"
        return (f"{token.id}\t{token.tenant.slug}\t{token.prefix}…\t{token.scopes.replace(' ', ',')}"
                f"\t{token.name}\t{last}\t{'revoked' if token.revoked_at else 'active'}")

    tenant_id = _tenant_or_fail(tenant).id if tenant else None
    _table("id\ttenant\tprefix\tscopes\tname\tlast used\tstatus", map(line, store.list_tokens(tenant_id)))


@tokens_group.command("revoke")
@click.argument("token_id", type=int)
def tokens_revoke(token_id: int):
    token = auth.revoke_token(token_id)
    if token is None:
        raise click.ClickException(f"no token {token_id}")
    click.echo(f"revoked token {token_id}")


@click.group("integrations", cls=AppGroup)
def integrations_group():
    """Secrets that signed webhooks (GitHub, HubSpot, Salesforce, generic) are checked with."""


@integrations_group.command("set-secret")
@click.option("--tenant", required=True, help="Tenant slug the integration posts for.")
@click.option("--integration", required=True, type=click.Choice(signing.INTEGRATIONS))
@click.option("--name", default="", help="The webhook's name, as in /api/v1/integrations/webhook/<name>.")
@click.option("--secret", default=None, help="The secret to use (HubSpot: your app's client secret). "
              "Without it a random one is made and printed.")
def integrations_set_secret(tenant: str, integration: str, name: str, secret: str | None):
    """Set or replace a tenant's secret for an integration; prints the secret."""
    target = _tenant_or_fail(tenant)
    try:
        stored = signing.set_secret(target, integration, name, secret)
    except signing.SecretError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(stored)
    label = f"{integration}/{name}" if name else integration
    click.echo(f"secret for {label} set for tenant {tenant!r}; give the same secret to the sender", err=True)


@integrations_group.command("list")
@click.option("--tenant", default=None, help="Only this tenant's integrations.")
def integrations_list(tenant: str | None):
    """Tenants, integrations and when their secret was set (never the secret)."""
    tenant_id = _tenant_or_fail(tenant).id if tenant else None
    _table("tenant\tintegration\tname\tset at", (
        f"{row.tenant.slug}\t{row.integration}\t{row.name or '-'}\t{row.created_at.isoformat(timespec='seconds')}"
        for row in store.list_secrets(tenant_id)))


@click.group("claude-code", cls=AppGroup)
def claude_code_group():
    """Connect Claude Code's hooks to this server."""


@claude_code_group.command("settings")
@click.option("--style", type=click.Choice(["http", "command"]), default="http", show_default=True,
              help="http: Claude Code posts each event; command: hooks/activityweb_hook.py posts it and "
              "spools while the server is away.")
@click.option("--url", default="http://127.0.0.1:5000", show_default=True,
              help="This server's address as Claude Code's machine reaches it.")
@click.option("--otel", is_flag=True, help="Print the env block that exports Claude Code's telemetry (cost, "
              "tokens) to this server's OTLP receiver instead of the hooks.")
@click.option("--token", default=None, help="With --otel: the ingest token to write into the env block.")
@click.option("--protocol", type=click.Choice(["http/protobuf", "http/json"]), default="http/protobuf",
              show_default=True, help="With --otel: the OTLP encoding.")
def claude_code_settings(style: str, url: str, otel: bool, token: str | None, protocol: str):
    """Print the settings.json block (env and hooks) for .claude/settings.json."""
    if otel:
        click.echo(json.dumps(claude_code_otel.otel_settings(url, token, protocol), indent=2))
        click.echo("Merge this into the env of .claude/settings.json; the hooks and the telemetry join on the "
                   "session id, so use both.", err=True)
        return
    script = str(PROJECT_ROOT / "hooks" / "activityweb_hook.py")
    click.echo(json.dumps(claude_code.hook_settings(style, url, script), indent=2))
    click.echo("Merge this into .claude/settings.json (or ~/.claude/settings.json) and set ACTIVITYWEB_TOKEN "
               "in Claude Code's environment to a token with the ingest scope (flask tokens create).", err=True)


@click.group("users", cls=AppGroup)
def users_group():
    """Dashboard accounts."""


def _read_password() -> str:
    """Prompted (twice) at a terminal; one line from stdin otherwise."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return sys.stdin.readline().rstrip("\n")


@users_group.command("create")
@click.option("--email", required=True)
@click.option("--tenant", required=True, help="Tenant slug the user joins.")
@click.option("--role", type=click.Choice(sorted(auth.ROLE_SCOPES)), default="viewer", show_default=True)
def users_create(email: str, tenant: str, role: str):
    """Create a user (password prompted, or read from stdin), or add an
    existing user to another tenant."""
    target = _tenant_or_fail(tenant)
    existing = auth.find_user(email)
    password = "" if existing else _read_password()
    try:
        user = auth.create_user(email, password, target, role)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    verb = "added" if existing else "created"
    click.echo(f"{verb} {user.email} as {role} of tenant {tenant!r}")


@click.command("export")
@with_appcontext
@click.option("--tenant", required=True, help="Tenant slug.")
@click.option("--format", "fmt", type=click.Choice(sorted(export.FORMATS)), default="ndjson", show_default=True)
@click.option("--where", default="", metavar="QUERY",
              help="The feed's filters as a query string, e.g. 'type=claude.tool.*&since=2026-11-01'.")
@click.option("--output", type=click.File("w", encoding="utf-8"), default="-", help="File to write (default: stdout).")
def export_command(tenant: str, fmt: str, where: str, output):
    """Write a tenant's events (newest first) as CSV or NDJSON, streamed."""
    target = _tenant_or_fail(tenant)
    try:
        flt = parse_filter(MultiDict(parse_qsl(where, keep_blank_values=True)))
    except InvalidQuery as exc:
        raise click.ClickException(exc.message) from None
    if flt.read is not None:
        raise click.ClickException("read: read state is a reader's; the command line has none")
    for chunk in export.exported(target.id, target.slug, flt, fmt):
        output.write(chunk)


@click.group("rollups", cls=AppGroup)
def rollups_group():
    """The hourly and daily rollups stats read."""


@rollups_group.command("compact")
def rollups_compact():
    """Sum the hourly rollups of every day that has ended into daily rows
    (stats and `flask prune` do this when due; this does it now)."""
    _compact_rollups()


@rollups_group.command("rebuild")
@click.option("--tenant", default=None, help="Tenant slug (default: every tenant).")
def rollups_rebuild(tenant: str | None):
    """Recompute the rollups from the stored events (ingest keeps them; this
    repairs them, e.g. after loading rows by hand). Writers wait meanwhile."""
    target = _tenant_or_fail(tenant) if tenant else None
    started = time.perf_counter()
    rows = store.rebuild_rollups(target.id if target else None)
    click.echo(f"rebuilt {rows} rollup rows in {time.perf_counter() - started:.1f}s")


def register_commands(app: Flask) -> None:
    for command in (seed_command, tenants_group, tokens_group, users_group, integrations_group, claude_code_group,
                    export_command, prune_command, rollups_group, partitions_group):
        app.cli.add_command(command)
