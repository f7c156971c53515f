"""Extensions, made here unbound and bound to the app in `create_app`."""
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sock import Sock
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
migrate = Migrate(render_as_batch=True)  # SQLite needs batch mode for ALTER
sock = Sock()
csrf = CSRFProtect()
# Limits are set per blueprint and view (security.py); the storage is memory
# unless RATELIMIT_STORAGE_URI names Redis, which workers and hosts share.
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
