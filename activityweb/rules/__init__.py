"""Rules that act on events: alerts to webhooks, Slack and email, digests.

- `conditions`: what a rule is (a feed filter plus a condition) and when it fires, pure
- `models`: its tables (rules, channels, the outbox, delivery attempts)
- `egress`: outgoing HTTP that refuses private addresses (SSRF guard)
- `channels`: how a message is sent: Standard Webhooks, Slack, SMTP
- `worker`: schedules (heartbeats, digests) and delivery with retries
- `cli`: `flask rules ...`

The SQL is in `store/rules.py` (rules, channels, evaluation at ingest) and
`store/outbox.py` (what is to be delivered, and what was tried). This package
imports nothing at import time, so the store can import its models.
"""
