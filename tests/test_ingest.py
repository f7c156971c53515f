"""POST /api/v1/activities: storing events, once."""
from concurrent.futures import ThreadPoolExecutor

import pytest

from activityweb import store
from activityweb.extensions import db
from conftest import event


def test_single_event_is_stored_and_returned(client, auth_headers):
    response = client.post("/api/v1/activities", json=event(
        type="project.created", title="Project 'billing' created", source="api", source_id="p-1",
        actor_id="u-1", actor_name="Alice", entity_type="project", entity_id="billing", priority="high",
        tags=["project", "billing"], data={"container": "abc123"}, occurred_at="2026-11-20T10:00:00+02:00",
    ), headers=auth_headers)
    assert response.status_code == 201
    body = response.get_json()
    assert body["tenant"] == "acme"
    assert body["type"] == "project.created"
    assert body["occurred_at"] == "2026-11-20T08:00:00.000000Z"
    assert body["tags"] == ["project", "billing"]
    assert body["data"] == {"container": "abc123"}
    assert "duplicate" not in body
    fetched = client.get(f"/api/v1/activities/{body['id']}", headers=auth_headers).get_json()
    assert fetched == body


def test_defaults_source_priority_and_times(client, auth_headers):
    body = client.post("/api/v1/activities", json=event(), headers=auth_headers).get_json()
    assert body["source"] == "api"
    assert body["priority"] == "normal"
    assert body["source_id"] == body["id"]  # no producer id: the event is its own key
    assert body["occurred_at"] == body["received_at"]
    assert body["tags"] == [] and body["data"] == {}


def test_repeat_is_a_duplicate_with_the_stored_event(client, auth_headers):
    first = client.post("/api/v1/activities", json=event(source="github", source_id="delivery-1"), headers=auth_headers)
    again = client.post("/api/v1/activities", json=event(source="github", source_id="delivery-1", title="changed"),
                        headers=auth_headers)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.get_json()["duplicate"] is True
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["title"] == "Something happened"  # the stored one, not the retry
    # The same source_id from another source is another event.
    other = client.post("/api/v1/activities", json=event(source="hubspot", source_id="delivery-1"), headers=auth_headers)
    assert other.status_code == 201


def test_batch_is_one_statement_with_created_and_duplicates(client, auth_headers):
    client.post("/api/v1/activities", json=event(source_id="a"), headers=auth_headers)
    batch = [event(source_id="a"), event(source_id="b"), event(source_id="c"), event(source_id="b")]
    response = client.post("/api/v1/activities", json=batch, headers=auth_headers)
    assert response.status_code == 201
    body = response.get_json()
    assert body["created"] == 2 and body["duplicates"] == 2
    assert [i["source_id"] for i in body["items"]] == ["a", "b", "c", "b"]
    assert [i["duplicate"] for i in body["items"]] == [True, False, False, True]
    assert body["items"][1]["id"] == body["items"][3]["id"]
    listed = client.get("/api/v1/activities?limit=200", headers=auth_headers).get_json()["items"]
    assert sorted(i["source_id"] for i in listed) == ["a", "b", "c"]


def test_batch_of_only_repeats_answers_200(client, auth_headers):
    client.post("/api/v1/activities", json=[event(source_id="x")], headers=auth_headers)
    response = client.post("/api/v1/activities", json=[event(source_id="x")], headers=auth_headers)
    assert response.status_code == 200
    assert response.get_json()["created"] == 0


def test_batch_of_a_thousand(client, auth_headers, app):
    batch = [event(source_id=f"e{i}", title=f"Event {i}") for i in range(1000)]
    response = client.post("/api/v1/activities", json=batch, headers=auth_headers)
    assert response.status_code == 201
    assert response.get_json()["created"] == 1000
    with app.app_context():
        assert store.count_activities(1) == 1000


def test_twenty_concurrent_identical_posts_leave_one_row(app, auth_headers):
    """Each request on its own connection, as under a real server."""
    body = event(source="webhook", source_id="same-delivery")

    def post(_):
        with app.test_client() as c:
            r = c.post("/api/v1/activities", json=body, headers=auth_headers)
            return r.status_code, r.get_json()["id"]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(post, range(20)))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(201) == 1 and statuses.count(200) == 19
    assert len({i for _, i in results}) == 1
    with app.app_context():
        assert store.count_activities(1) == 1
        db.session.remove()


def test_concurrent_overlapping_batches(app, auth_headers):
    batches = [[event(source_id=f"k{(start + i) % 30}") for i in range(10)] for start in range(0, 60, 5)]

    def post(batch):
        with app.test_client() as c:
            return c.post("/api/v1/activities", json=batch, headers=auth_headers).get_json()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(post, batches))
    assert sum(r["created"] for r in results) == 30
    ids_by_key = {}
    for r in results:
        for item in r["items"]:
            ids_by_key.setdefault(item["source_id"], set()).add(item["id"])
    assert all(len(ids) == 1 for ids in ids_by_key.values())
    with app.app_context():
        assert store.count_activities(1) == 30


@pytest.mark.parametrize("tenant_field", ["tenant", "tenant_id"])
def test_tenant_is_never_taken_from_the_body(client, auth_headers, tenant_field):
    response = client.post("/api/v1/activities", json=event(**{tenant_field: "other"}), headers=auth_headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["details"][0]["field"] == tenant_field
