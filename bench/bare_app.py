"""The ceiling for single-event POSTs: a bare Flask handler that parses the
same JSON and answers 201, under the same gunicorn settings as ActivityWeb."""
import json

from flask import Flask, request

app = Flask(__name__)


@app.post("/api/v1/activities")
def create():
    body = json.loads(request.get_data())
    return {"id": "x", "title": body.get("title")}, 201
