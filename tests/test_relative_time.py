"""One relative-time rule: the server renders "5 min ago" and the browser only
refreshes it, from the same rule, so the two always say the same thing."""
import json
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from activityweb.web.present import RELATIVE_TIME, relative_time
from conftest import _unavailable, event

SCRIPT = Path(__file__).resolve().parent.parent / "static" / "relative-time.js"
AGES = [timedelta(seconds=s) for s in (-30, 0, 10, 44.9, 45, 89.9, 90, 150, 3599, 3600, 5400, 9000, 86399)] + [
    timedelta(days=d, hours=h) for d, h in ((1, 0), (1, 23), (2, 0), (3, 5), (6, 23), (7, 0), (30, 0), (200, 0),
                                            (365, 0), (400, 0), (800, 0))]
NOWS = [datetime(2026, 1, 2, 8, 0, tzinfo=timezone.utc), datetime(2026, 6, 15, 12, 30, tzinfo=timezone.utc),
        datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc), datetime(2027, 1, 1, 0, 0, 30, tzinfo=timezone.utc)]


def iso_ms(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_python_and_the_browser_script_agree_everywhere():
    node = shutil.which("node")
    if node is None:
        _unavailable("node", "not on PATH")
    cases = [(now - age, now) for now in NOWS for age in AGES]
    program = f"""
const relativeTime = require({str(SCRIPT)!r});
const rule = {json.dumps(RELATIVE_TIME)};
const cases = {json.dumps([[iso_ms(m), iso_ms(n)] for m, n in cases])};
console.log(JSON.stringify(cases.map(([m, n]) => relativeTime(rule, new Date(m), Date.parse(n)))));
"""
    result = subprocess.run([node, "-e", program], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    in_browser = json.loads(result.stdout)
    on_server = [relative_time(moment, now) for moment, now in cases]
    assert in_browser == on_server
    # The cases reach every step of the rule, the dates of this year and another year's.
    assert {"in the future", "just now", "1 min ago", "3 min ago", "2 h ago", "yesterday", "6 days ago",
            "Dec 26, 2025", "Dec 1"} <= set(on_server)


def test_halves_round_up():
    now = NOWS[1]
    assert relative_time(now - timedelta(seconds=150), now) == "3 min ago"
    assert relative_time(now - timedelta(hours=2, minutes=30), now) == "3 h ago"


@pytest.mark.browser
def test_the_page_keeps_the_servers_text_for_a_date_in_another_year(sqlite_local_app, serve, page):
    """A year-old event: the server says "Oct 28, 2025"; the refreshed page must say the same."""
    server = serve(sqlite_local_app)
    old = datetime.now(timezone.utc) - timedelta(days=400)
    response = requests.post(server.url + "/api/v1/activities", json=event(title="A year ago", occurred_at=old.isoformat()),
                             timeout=10)
    assert response.status_code == 201
    page.goto(server.url + "/")
    # Read once the page refreshed it: the hover title is then the reader's local time, not "... UTC".
    shown = page.wait_for_function("""id => {
        const t = document.querySelector(`#activity-${id} time`);
        return t && !t.title.endsWith("UTC") && t.textContent;
    }""", arg=response.json()["id"]).json_value()
    assert shown == relative_time(old)
    assert str(old.year) in shown
