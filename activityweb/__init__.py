"""ActivityWeb: one service that any system sends activity events to, and people watch live.

`activityweb.app.create_app` builds the app. This package module imports
nothing: gunicorn's master reads `activityweb.config` (standard library only)
before it forks, and nothing of the app, its locks or psycopg may be loaded
there before the workers' gevent patching. The producers' client is a package
of its own (`clients/python`).
"""
