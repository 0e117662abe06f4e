"""A worker that refreshes a connector's token through ``services.tokens.access_token`` and
kills itself with SIGKILL at ``POINT``, the way an OOM kill or a pulled plug ends a process:
no ``finally``, no rollback, no socket closed politely.

- ``before_token_call``: the lock (or lease) is taken, the token request not sent;
- ``after_token_reply``: the server rotated the tokens, nothing is stored yet;
- ``after_commit``: the new tokens are committed.

The hooks are installed here, in this process only, by wrapping ``protocol.tokens.refresh``
and listening to SQLAlchemy's ``after_commit``. If the worker lives to the end it prints what
it got and exits 0, which the test treats as a failure to crash.

Usage: python tests/crash_worker.py DATABASE_URI INSTANCE_PATH CONNECTOR_ID POINT LOCK_SECONDS
"""

import os
import signal
import sys

from sqlalchemy import event
from sqlalchemy.orm import Session

from mcpadmin import create_app
from mcpadmin.extensions import db
from mcpadmin.models import Connector
from mcpadmin.protocol import tokens as grants
from mcpadmin.services import tokens

POINTS = ("before_token_call", "after_token_reply", "after_commit")


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def install(point):
    original, replied = grants.refresh, []

    def refresh(*args, **kwargs):
        if point == "before_token_call":
            die()
        answer = original(*args, **kwargs)
        if point == "after_token_reply":
            die()
        replied.append(answer)
        return answer

    grants.refresh = refresh  # services.tokens calls it through the module

    @event.listens_for(Session, "after_commit")
    def committed(session):
        if point == "after_commit" and replied:
            die()


def main(uri, instance_path, connector_id, point, lock_seconds):
    if point not in POINTS:
        sys.exit(f"POINT must be one of {POINTS}")
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": uri, "AUTO_MIGRATE": False, "ALLOW_PRIVATE_NETWORKS": True,
         "ALLOW_HTTP_LOOPBACK": True, "REFRESH_LOCK_SECONDS": lock_seconds},
        instance_path=instance_path,
    )  # fmt: skip
    install(point)
    with app.app_context():
        print(tokens.access_token(db.session.get(Connector, connector_id), None), flush=True)


if __name__ == "__main__":
    uri, instance_path, connector_id, point, lock_seconds = sys.argv[1:]
    main(uri, instance_path, int(connector_id), point, float(lock_seconds))
