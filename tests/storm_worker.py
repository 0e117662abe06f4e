"""One process of the refresh storm: ``THREADS`` threads ask for the same connector's access
token at the same instant; each prints the token it got (or its error), one per line.

Usage: python tests/storm_worker.py DATABASE_URI INSTANCE_PATH CONNECTOR_ID THREADS START_AT
"""

import sys
import threading
import time

from mcpadmin import create_app
from mcpadmin.extensions import db
from mcpadmin.models import Connector
from mcpadmin.services import tokens


def main(uri, instance_path, connector_id, threads, start_at):
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": uri, "AUTO_MIGRATE": False, "ALLOW_PRIVATE_NETWORKS": True,
         "ALLOW_HTTP_LOOPBACK": True, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": threads}},
        instance_path=instance_path,
    )  # fmt: skip
    results = []

    def ask():
        with app.app_context():
            connector = db.session.get(Connector, connector_id)
            time.sleep(max(0.0, start_at - time.time()))
            try:
                results.append(tokens.access_token(connector, None))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                results.append(f"ERROR {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    print("\n".join(results), flush=True)


if __name__ == "__main__":
    uri, instance_path, connector_id, threads, start_at = sys.argv[1:]
    main(uri, instance_path, int(connector_id), int(threads), float(start_at))
