"""One process of the refresh storm: ``THREADS`` threads, each with the connector loaded in its
own session, ask for its access token at the same instant. Prints ``ready`` once set up, reads
the start time (epoch seconds) from stdin, then prints one JSON line: per thread, the seconds it
waited after the start and the token it got (or its error).

Usage: python bench/storm_worker.py DIRECTORY CONNECTOR_ID THREADS
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import make_app  # noqa: E402


def main(directory, connector_id, threads):
    from mcpadmin.extensions import db
    from mcpadmin.models import Connector
    from mcpadmin.services import tokens

    app = make_app(directory, AUTO_MIGRATE=False,
                   SQLALCHEMY_ENGINE_OPTIONS={"pool_size": threads})  # fmt: skip
    loaded, go = threading.Barrier(threads + 1), threading.Event()
    start = {}
    results = []

    def ask():
        with app.app_context():
            connector = db.session.get(Connector, connector_id)
            loaded.wait()
            go.wait()
            time.sleep(max(0.0, start["at"] - time.time()))
            try:
                token = tokens.access_token(connector, None)
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                token = f"ERROR {type(exc).__name__}: {exc}"
            results.append({"wait": time.time() - start["at"], "token": token})

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    loaded.wait()
    print("ready", flush=True)
    start["at"] = float(sys.stdin.readline())
    go.set()
    for worker in workers:
        worker.join()
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    directory, connector_id, threads = sys.argv[1:]
    main(directory, int(connector_id), int(threads))
