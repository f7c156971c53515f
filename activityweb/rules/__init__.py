"""Rules that act on events: alerts to webhooks, Slack and email, digests.

- `conditions`: what a rule is (a feed filter plus a condition) and when it fires, pure
- `matching`: a batch of new events against many filters at once (agrees with `ActivityFilter.matches`)
- `models`: its tables (rules, channels, the outbox, delivery attempts, window counters)
- `egress`: outgoing HTTP that refuses private addresses (SSRF guard)
- `channels`: how a message is sent: Standard Webhooks, Slack, SMTP
- `manage`: what the API, the pages and the CLI share (saving, testing a channel, the test event)
- `worker`: schedules (heartbeats, digests) and delivery with retries
- `setup`: settings, the CLI group and the in-process worker thread; `cli`: `flask rules ...`

The SQL is in `store/rules.py` (rules, channels, the worker's reads),
`store/firing.py` (evaluation at ingest) and `store/outbox.py` (what is to
be delivered, and what was tried). Grouping events by day, type, actor and
entity (digests; the feed's grouped view) is `activityweb/grouping.py`. This package
imports nothing at import time, so the store can import its models.
"""
