"""Several gunicorn workers share one live feed through PostgreSQL.

gunicorn runs the Procfile's config (gevent, 2 workers) on the test
PostgreSQL database; 20 dashboard sockets connect (the kernel spreads them
over both workers); events arrive through HTTP (whichever worker accepts
each POST) and straight from another process's database connection. Every
socket must receive every matching event, and nothing else.
"""
import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from websockets.asyncio.client import connect

from activityweb import store
from activityweb.schemas import ActivityIn
from bench.common import gunicorn
from conftest import event

pytestmark = pytest.mark.server


@pytest.mark.parametrize("backend", ["postgresql"])
def test_every_socket_gets_every_matching_event_from_any_worker(backend, local_app):
    import os

    env = dict(os.environ, DATABASE_URL=local_app.config["SQLALCHEMY_DATABASE_URI"].replace("+psycopg", ""),
               ACTIVITYWEB_LOCAL_MODE="1", SECRET_KEY="test", LOG_LEVEL="warning")
    with gunicorn("wsgi:app", env, workers=2) as (base, _):
        ws_base = base.replace("http://", "ws://")
        expected: set[str] = set()

        async def run():
            sockets = [await connect(f"{ws_base}/feed/ws?type=gu.*", origin=base) for _ in range(20)]
            received = [set() for _ in sockets]
            unexpected = []

            async def read(i, ws):
                async for message in ws:
                    for event_id in re.findall(r'data-id="([0-9a-f-]{36})"', message):
                        received[i].add(event_id)
                    if "not for us" in message:
                        unexpected.append(message)

            for ws in sockets:
                await ws.send(json.dumps({"since": None}))
            readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
            await asyncio.sleep(1.0)  # every socket subscribed

            def post_http():
                for n in range(10):
                    r = requests.post(f"{base}/api/v1/activities", headers={"Connection": "close"},
                                      json=[event(title=f"via http {n}", type="gu.event"),
                                            event(title=f"not for us {n}", type="other.event")], timeout=10)
                    assert r.status_code == 201
                    expected.add(r.json()["items"][0]["id"])

            def insert_directly():
                with local_app.app_context():
                    tenant = store.get_or_create_tenant("default")
                    rows = [ActivityIn.model_validate(event(title=f"via db {n}", type="gu.event")).model_dump()
                            for n in range(5)]
                    expected.update(r.activity["id"] for r in store.add_activities(tenant.id, rows))

            await asyncio.to_thread(post_http)
            await asyncio.to_thread(insert_directly)
            for _ in range(100):
                if all(r >= expected for r in received):
                    break
                await asyncio.sleep(0.1)
            for ws in sockets:
                await ws.close()
            for task in readers:
                task.cancel()
            return received, unexpected

        # A thread of its own: Playwright's sync API may own this thread's loop.
        with ThreadPoolExecutor(1) as pool:
            received, unexpected = pool.submit(asyncio.run, run()).result()
    assert len(expected) == 15
    missing = [len(expected - r) for r in received]
    assert missing == [0] * 20, f"events missing per socket: {missing}"
    assert all(r == expected for r in received)
    assert not unexpected
