"""GitHub webhooks: verified by `X-Hub-Signature-256`, one activity per delivery.

GitHub signs the raw body with the webhook's secret: `sha256=` and the hex
HMAC-SHA256. `X-GitHub-Event` names the event; `X-GitHub-Delivery` is a GUID
that a redelivery keeps, but it is not signed: a captured body replayed
under a new GUID would be stored again. So the source_id is the event name
and a digest of the signed body (a redelivery is the same body, hence a
duplicate), and the delivery GUID is kept in `data`. push, pull_request, issues, release and workflow_run are mapped
to readable activities; any other event is recorded generically as
`github.<event>[.<action>]` with its payload in `data`.
"""
from __future__ import annotations

import hashlib
from typing import Mapping

from ..auth import Principal
from ..errors import invalid_body
from .shaping import as_data, build_event, clip, dig, one_line, parse_json, parse_moment, snake
from .signing import find_signer, hmac_sha256, invalid_signature, same

SOURCE = "github"
# workflow_run conclusions: (status, word in the title, priority)
CONCLUSIONS = {
    "success": ("success", "passed", "normal"),
    "failure": ("failed", "failed", "high"),
    "timed_out": ("failed", "timed out", "high"),
    "startup_failure": ("failed", "failed to start", "high"),
    "cancelled": ("cancelled", "was cancelled", "normal"),
    "skipped": ("skipped", "was skipped", "low"),
    "neutral": ("neutral", "finished", "normal"),
    "action_required": ("waiting", "needs action", "high"),
}


def signer(headers: Mapping[str, str], body: bytes) -> Principal:
    given = headers.get("X-Hub-Signature-256", "")
    if not given.startswith("sha256="):
        raise invalid_signature("X-Hub-Signature-256 is missing; set a secret on the GitHub webhook.")
    return find_signer(SOURCE, "", lambda secret: same("sha256=" + hmac_sha256(secret, body).hex(), given))


def events(headers: Mapping[str, str], body: bytes) -> list[dict]:
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise invalid_body("A GitHub webhook body is a JSON object.", "expected an object")
    event = snake(headers.get("X-GitHub-Event") or "unknown")
    delivery = one_line(headers.get("X-GitHub-Delivery"), 150)
    fields = {**_common(payload), **MAPPERS.get(event, _other)(event, payload)}
    fields["data"] = {**fields.get("data", {}), "delivery": delivery}
    return [build_event(source=SOURCE, source_id=signed_body_key(event, body), **fields)]


def signed_body_key(event: str, body: bytes) -> str:
    """The idempotency key of a delivery: what the signature covers (the body),
    with the event name (the one header a mapping reads)."""
    return f"{event}:{hashlib.sha256(body).hexdigest()}"


def _common(p: dict) -> dict:
    repo = dig(p, "repository", "full_name")
    sender = dig(p, "sender", "login")
    return {
        "actor_id": one_line(sender, 200),
        "actor_name": one_line(sender, 200),
        "project": one_line(dig(p, "repository", "name"), 200),
        "entity_type": "repository" if repo else None,
        "entity_id": one_line(repo, 200),
        "entity_name": one_line(repo, 300),
    }


def _push(event: str, p: dict) -> dict:
    repo = dig(p, "repository", "full_name") or "a repository"
    ref = str(p.get("ref") or "")
    commits = p.get("commits") if isinstance(p.get("commits"), list) else []
    head = p.get("head_commit") if isinstance(p.get("head_commit"), dict) else {}
    if ref.startswith("refs/tags/"):
        title = f"Pushed tag {ref.removeprefix('refs/tags/')} to {repo}"
    elif p.get("deleted"):
        title = f"Deleted {ref.removeprefix('refs/heads/')} in {repo}"
    else:
        n = len(commits)
        title = f"Pushed {n} commit{'s' * (n != 1)} to {repo}:{ref.removeprefix('refs/heads/')}"
    data = {
        "ref": ref, "before": p.get("before"), "after": p.get("after"), "compare": p.get("compare"),
        "forced": p.get("forced"), "created": p.get("created"), "deleted": p.get("deleted"),
        "commits": [
            {"id": str(c.get("id", ""))[:12], "message": one_line(c.get("message"), 200),
             "author": dig(c, "author", "name"), "url": c.get("url")}
            for c in commits[:20] if isinstance(c, dict)
        ],
    }
    columns = {
        "type": "github.push", "title": one_line(title, 300),
        "summary": clip(str(head.get("message") or "").split("\n")[0], 5000),
        "occurred_at": parse_moment(head.get("timestamp")), "tags": ["git"], "data": as_data(data),
    }
    if dig(p, "pusher", "name"):
        columns["actor_name"] = one_line(dig(p, "pusher", "name"), 200)
    return columns


def _pull_request(event: str, p: dict) -> dict:
    pr = p.get("pull_request") if isinstance(p.get("pull_request"), dict) else {}
    action = "merged" if p.get("action") == "closed" and pr.get("merged") else None
    fields = ("number", "html_url", "state", "draft", "merged", "additions", "deletions", "changed_files",
              "merged_at", "closed_at")
    return _numbered(p, pr, "pull_request", "PR", "pr", fields, action,
                     base=dig(pr, "base", "ref"), head=dig(pr, "head", "ref"))


def _issues(event: str, p: dict) -> dict:
    issue = p.get("issue") if isinstance(p.get("issue"), dict) else {}
    labels = [one_line(label.get("name"), 64) for label in issue.get("labels") or [] if isinstance(label, dict)]
    fields = ("number", "html_url", "state", "state_reason", "comments")
    return _numbered(p, issue, "issue", "Issue", "issue", fields, None, labels=labels[:20])


def _numbered(p: dict, item: dict, kind: str, label: str, tag: str, fields: tuple, action: str | None,
              **more_data) -> dict:
    """A pull request or an issue: "PR #417 merged: Paginate the users endpoint"."""
    action = action or snake(p.get("action") or "updated")
    number = item.get("number") or p.get("number")
    data = {k: item.get(k) for k in fields}
    data.update(action=p.get("action"), **more_data)
    return {
        "type": f"github.{'issues' if kind == 'issue' else kind}.{action}",
        "title": one_line(f"{label} #{number} {action.replace('_', ' ')}: {item.get('title') or ''}", 300),
        "summary": clip(item.get("body"), 5000),
        "entity_type": kind, "entity_id": one_line(f"{dig(p, 'repository', 'full_name')}#{number}", 200),
        "entity_name": one_line(item.get("title"), 300),
        "occurred_at": parse_moment(item.get("updated_at")), "tags": [tag], "data": as_data(data),
    }


def _release(event: str, p: dict) -> dict:
    release = p.get("release") if isinstance(p.get("release"), dict) else {}
    action = snake(p.get("action") or "updated")
    repo = dig(p, "repository", "full_name") or "a repository"
    tag = release.get("tag_name") or release.get("name") or "a release"
    title = f"Released {repo} {tag}" if action == "published" else f"Release {tag} {action.replace('_', ' ')} in {repo}"
    data = {k: release.get(k) for k in ("tag_name", "name", "html_url", "prerelease", "draft", "target_commitish")}
    data["action"] = p.get("action")
    return {
        "type": f"github.release.{action}", "title": one_line(title, 300), "summary": clip(release.get("body"), 5000),
        "entity_type": "release", "entity_id": one_line(f"{repo}@{tag}", 200), "entity_name": one_line(tag, 300),
        "occurred_at": parse_moment(release.get("published_at") or release.get("created_at")),
        "tags": ["release"], "data": as_data(data),
    }


def _workflow_run(event: str, p: dict) -> dict:
    run = p.get("workflow_run") if isinstance(p.get("workflow_run"), dict) else {}
    action = snake(p.get("action") or "updated")
    repo = dig(p, "repository", "full_name") or "a repository"
    name = run.get("name") or "A workflow"
    where = f"{repo}:{run.get('head_branch')}" if run.get("head_branch") else repo
    columns: dict = {"status": "started" if action == "requested" else "running" if action == "in_progress" else None}
    title = f"{name} {'started' if action == 'requested' else 'running' if action == 'in_progress' else action} on {where}"
    if action == "completed":
        status, word, priority = CONCLUSIONS.get(str(run.get("conclusion")), ("finished", "finished", "normal"))
        title = f"{name} {word} on {where}"
        columns = {"status": status, "priority": priority}
        started, ended = parse_moment(run.get("run_started_at")), parse_moment(run.get("updated_at"))
        if started and ended and ended >= started:
            columns["duration_ms"] = int((ended - started).total_seconds() * 1000)
    data = {k: run.get(k) for k in ("id", "name", "html_url", "event", "status", "conclusion", "head_branch",
                                    "head_sha", "run_number", "run_attempt")}
    data["action"] = p.get("action")
    return {
        "type": f"github.workflow_run.{action}", "title": one_line(title, 300),
        "summary": clip(dig(run, "head_commit", "message"), 5000),
        "entity_type": "workflow_run", "entity_id": one_line(run.get("id"), 200), "entity_name": one_line(name, 300),
        "correlation_id": f"workflow_run:{run.get('id')}" if run.get("id") else None,
        "occurred_at": parse_moment(run.get("updated_at")), "tags": ["ci"], "data": as_data(data), **columns,
    }


def _other(event: str, p: dict) -> dict:
    action = p.get("action") if isinstance(p.get("action"), str) else None
    where = dig(p, "repository", "full_name") or dig(p, "organization", "login")
    words = " ".join(w for w in (event.replace("_", " "), action) if w)
    return {
        "type": f"github.{event}" + (f".{snake(action)}" if action else ""),
        "title": one_line(f"GitHub {words}" + (f" on {where}" if where else ""), 300),
        "data": as_data(p),
    }


MAPPERS = {"push": _push, "pull_request": _pull_request, "issues": _issues, "release": _release,
           "workflow_run": _workflow_run}
