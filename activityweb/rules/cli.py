"""`flask rules ...`: list, create and delete rules and channels; run the worker."""
from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .. import store
from ..errors import ApiError
from ..store import outbox
from ..store import rules as store_rules
from . import channels as channel_kinds
from .conditions import CONDITIONS, describe, parse_rule


def _tenant(slug: str):
    tenant = store.find_tenant(slug)
    if tenant is None:
        raise click.ClickException(f"no tenant {slug!r}")
    return tenant


@click.group("rules", cls=AppGroup)
def rules_group():
    """Rules that act on events, their channels, and the delivery worker."""


@rules_group.command("list")
@click.option("--tenant", required=True)
def rules_list(tenant: str):
    click.echo("id\tname\tfilter\tcondition\tchannel\tenabled\tlast fired")
    for rule in store_rules.list_rules(_tenant(tenant).id):
        last = rule.last_fired_at.isoformat(timespec="seconds") if rule.last_fired_at else "never"
        click.echo(f"{rule.id}\t{rule.name}\t{rule.filter or '-'}\t{describe(rule)}\t{rule.channel_id or '-'}"
                   f"\t{'yes' if rule.enabled else 'no'}\t{last}")


@rules_group.command("create")
@click.option("--tenant", required=True)
@click.option("--name", required=True)
@click.option("--filter", "filter_", default="", help="The feed's filter as a query string, e.g. 'type=deployment.*'.")
@click.option("--condition", type=click.Choice(CONDITIONS), required=True)
@click.option("--threshold", type=int)
@click.option("--window", "window_seconds", type=int, help="Seconds.")
@click.option("--percent", type=float)
@click.option("--metric")
@click.option("--budget", type=float)
@click.option("--cooldown", "cooldown_seconds", type=int, default=0, show_default=True, help="Seconds.")
@click.option("--channel", default=None, help="The channel's name.")
def rules_create(tenant: str, name: str, filter_: str, channel: str | None, **fields):
    """Create a rule."""
    target = _tenant(tenant)
    body = {"name": name, "filter": filter_, **{k: v for k, v in fields.items() if v is not None}}
    if channel:
        found = next((c for c in store_rules.list_channels(target.id) if c.name == channel), None)
        if found is None:
            raise click.ClickException(f"no channel {channel!r}; add it with `flask rules channels add`")
        body["channel_id"] = found.id
    try:
        rule = store_rules.save_rule(target.id, parse_rule(body))
    except ApiError as exc:
        raise click.ClickException("; ".join(f"{d['field']}: {d['message']}" for d in exc.details)) from None
    except store_rules.RuleConflict as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created rule {rule.id} {rule.name!r}: {describe(rule)}")


@rules_group.command("delete")
@click.option("--tenant", required=True)
@click.argument("rule_id", type=int)
def rules_delete(tenant: str, rule_id: int):
    if not store_rules.delete_rule(_tenant(tenant).id, rule_id):
        raise click.ClickException(f"no rule {rule_id}")
    click.echo(f"deleted rule {rule_id}")


@rules_group.command("firings")
@click.option("--tenant", required=True)
@click.option("--rule", "rule_id", type=int, default=None)
def rules_firings(tenant: str, rule_id: int | None):
    """Recent firings, newest first, with their delivery status."""
    click.echo("id\trule\twhen\tstatus\tattempts\treason")
    for m in outbox.recent_firings(_tenant(tenant).id, rule_id=rule_id, limit=50):
        click.echo(f"{m['id']}\t{m['rule_id']}\t{m['created_at'].isoformat(timespec='seconds')}\t{m['status']}"
                   f"\t{m['attempts']}\t{m['reason']}")


@rules_group.group("channels", cls=AppGroup)
def channels_group():
    """Where firings go."""


@channels_group.command("add")
@click.option("--tenant", required=True)
@click.option("--name", required=True)
@click.option("--kind", type=click.Choice(channel_kinds.KINDS), required=True)
@click.option("--target", required=True, help="The URL (webhook, slack) or the email address.")
def channels_add(tenant: str, name: str, kind: str, target: str):
    """Add a channel; a webhook's signing secret is printed once."""
    tenant_id = _tenant(tenant).id
    try:
        checked = channel_kinds.check_channel(kind, target, current_app.config)
        secret = channel_kinds.new_secret() if kind == "webhook" else None
        channel = store_rules.create_channel(tenant_id, name.strip()[:100], kind, checked, secret)
    except (channel_kinds.ChannelError, store_rules.RuleConflict) as exc:
        raise click.ClickException(str(exc)) from None
    if secret:
        click.echo(secret)
    click.echo(f"channel {channel.id} {name!r} ({kind})", err=True)


@channels_group.command("list")
@click.option("--tenant", required=True)
def channels_list(tenant: str):
    click.echo("id\tname\tkind\ttarget\tstate")
    for c in store_rules.list_channels(_tenant(tenant).id):
        state = f"paused: {c.pause_reason}" if c.paused_at else "active"
        click.echo(f"{c.id}\t{c.name}\t{c.kind}\t{c.target}\t{state}")


@rules_group.command("worker")
@click.option("--once", is_flag=True, help="One pass (schedules and what is due), then exit.")
@click.option("--poll", default=0.5, show_default=True, type=click.FloatRange(0.05, 60))
def worker_command(once: bool, poll: float):
    """Deliver firings (and fire heartbeats and digests) until stopped."""
    from .worker import Worker

    worker = Worker(current_app._get_current_object(), poll_seconds=poll)
    if once:
        worker.run_schedules()
        click.echo(f"tried {worker.deliver_due()} deliveries")
        return
    click.echo("rules worker running; Ctrl-C stops it", err=True)
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        pass
