"""The rules worker: heartbeats and digests by the clock, and delivery of the outbox.

`flask rules worker` runs it in its own process; `make run` runs it as a
thread of the server (`RULES_WORKER_THREAD`). Any number may run at once:
messages are claimed (PostgreSQL: SKIP LOCKED) and scheduled firings are
compare-and-set on the rule, so each firing is recorded once.

Delivery is at least once. A failed try is retried with exponential backoff
and full jitter (base RULES_RETRY_BASE seconds, doubling, capped at
RULES_RETRY_CAP), or when the receiver's Retry-After says (capped at
RETRY_AFTER_MAX), up to RULES_MAX_ATTEMPTS tries; then the message is dead
until someone redelivers it. A channel failing RULES_PAUSE_AFTER times in a
row over at least RULES_PAUSE_AFTER_SECONDS is paused: its messages wait,
nothing is dropped.
"""
from __future__ import annotations

import logging
import random
import threading
from datetime import datetime, timedelta, timezone

from flask import Flask

from .. import grouping
from ..models import utcnow
from ..serialize import activity_json, iso
from ..store import outbox
from ..store import firing
from ..store import rules as store_rules
from . import channels
from .conditions import DIGEST_PERIODS, describe_seconds

log = logging.getLogger(__name__)
RETRY_AFTER_MAX = 3600.0
SCHEDULE_EVERY = 5.0  # seconds between looks at heartbeats and digests


def retry_delay(attempts: int, retry_after: float | None, config) -> float:
    """Seconds until the next try, after `attempts` tries have failed."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), RETRY_AFTER_MAX)
    ceiling = min(config["RULES_RETRY_CAP"], config["RULES_RETRY_BASE"] * 2 ** max(attempts - 1, 0))
    return random.uniform(ceiling / 2, ceiling)  # jitter: retries of many messages spread out


class Worker:
    def __init__(self, app: Flask, poll_seconds: float = 0.5):
        self.app = app
        self.poll_seconds = poll_seconds
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._last_schedule = 0.0
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------- delivery

    def deliver_due(self, now: datetime | None = None) -> int:
        """Send what is due; returns how many were tried."""
        with self.app.app_context():
            due = outbox.claim_due(now)
            for message in due:
                self.deliver(message)
            return len(due)

    def deliver(self, due: outbox.Due) -> None:
        config = self.app.config
        result = channels.send(due.channel, due.id, due.payload, config)
        now = utcnow()
        outbox.record_attempt(due.tenant_id, due.channel_id, due.id, result, now)
        if result.ok:
            outbox.delivered(due, result, now)
            return
        tries = due.attempts + 1
        retry_at = None
        if tries < config["RULES_MAX_ATTEMPTS"]:
            retry_at = now + timedelta(seconds=retry_delay(tries, result.retry_after, config))
        paused = outbox.failed(due, result, now, retry_at, config["RULES_PAUSE_AFTER"],
                               config["RULES_PAUSE_AFTER_SECONDS"])
        log.info("delivery of %s to channel %s failed (%s); %s%s", due.id, due.channel_id,
                 result.error or result.status, f"retry at {iso(retry_at)}" if retry_at else "dead",
                 "; channel paused" if paused else "")

    # ----------------------------------------------------------- schedules

    def run_schedules(self, now: datetime | None = None) -> int:
        """Fire heartbeats that fell silent and digests whose period ended."""
        now = now or utcnow()
        fired = 0
        with self.app.app_context():
            for rule in store_rules.scheduled_rules():
                try:
                    fired += self._heartbeat(rule, now) if rule.condition == "heartbeat" else self._digest(rule, now)
                except Exception:
                    log.exception("rule %s could not be evaluated", rule.id)
            firing.prune_counters(now)
            outbox.prune(now - timedelta(days=self.app.config["RULES_KEEP_DAYS"]))
        return fired

    def _heartbeat(self, rule, now: datetime) -> int:
        """Fire once per silence (again after the cool-down, if still silent)."""
        last = store_rules.last_match_time(rule) or rule.created_at
        period = timedelta(seconds=rule.window_seconds)
        if now - last < period:
            return 0
        fired_for_this_silence = rule.last_fired_at is not None and rule.last_fired_at >= last + period
        if fired_for_this_silence and not (rule.cooldown_seconds and
                                           now - rule.last_fired_at >= timedelta(seconds=rule.cooldown_seconds)):
            return 0
        reason = f"no matching event for {describe_seconds(rule.window_seconds)} (last: {iso(last)})"
        payload = outbox.firing_payload(rule, reason, 0, [], now)
        payload["data"]["last_match_at"] = iso(last)
        return int(store_rules.fire_scheduled(rule, "firing", reason, payload, now))

    def _digest(self, rule, now: datetime) -> int:
        """At the end of each period (UTC hours or days), what the filter matched in it, grouped."""
        period = rule.window_seconds
        epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
        end = epoch + timedelta(seconds=(now - epoch).total_seconds() // period * period)
        sent_through = rule.last_fired_at or (epoch + timedelta(
            seconds=(rule.created_at - epoch).total_seconds() // period * period))
        if end <= sent_through:
            return 0
        start = max(sent_through, end - timedelta(seconds=period))
        events = store_rules.matches_between(rule, start, end)
        groups = [g for day in grouping.group_by_day(events) for g in day.groups]
        reason = f"{len(events)} events in {len(groups)} groups, {DIGEST_PERIODS[period]} to {iso(end)}"
        payload = outbox.firing_payload(rule, reason, len(events),
                                        [activity_json(e, rule.tenant_slug) for e in events[:10]], now)
        payload["type"] = "rule.digest"
        payload["data"].update(period_start=iso(start), period_end=iso(end), groups=[g.summary() for g in groups])
        if not events:  # nothing to tell: the period moves on without a message
            store_rules.fire_scheduled(rule, "digest", reason, None, now, fired_at=end)
            return 0
        return int(store_rules.fire_scheduled(rule, "digest", reason, payload, now, fired_at=end))

    # ---------------------------------------------------------------- loop

    def run_once(self, now: datetime | None = None) -> int:
        import time

        if time.monotonic() - self._last_schedule >= SCHEDULE_EVERY:
            self._last_schedule = time.monotonic()
            self.run_schedules(now)
        return self.deliver_due(now)

    def run_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                busy = self.run_once()
            except Exception:  # the database away, say: try again shortly
                log.exception("rules worker pass failed")
                busy = 0
            if not busy:
                self.wake.wait(self.poll_seconds)
                self.wake.clear()

    def start(self) -> "Worker":
        self._thread = threading.Thread(target=self.run_forever, name="rules-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
