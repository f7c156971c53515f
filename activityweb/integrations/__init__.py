"""Producers that are not our own JSON API, normalised into activities.

One module per producer: `claude_code` (Claude Code hooks), `github`,
`hubspot`, `salesforce` and `webhook` (anyone who signs our own event shape).
Each turns what its producer sends into validated event dicts for
`store.add_activities`; the views in `api/integrations.py` only parse and
answer. `signing` finds the tenant whose secret signed a webhook, `shaping`
holds what the producers share (cutting, cleaning, building events) and
`redact` masks secrets before anything is stored.
"""
