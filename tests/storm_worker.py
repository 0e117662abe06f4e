"""The refresh storm's workers: ``PROCESSES`` forked processes of ``THREADS`` threads each ask
for the same connector's access token at once.

The parent imports the app once and forks (importing it costs ~2 s of CPU per process, which
on a small machine would otherwise spread the storm's start over many seconds). Each child
builds its own app, engine and connections after the fork; its threads load the connector and
wait. Once every thread in every child is waiting the parent prints ``ready`` and reads one
line from stdin; then all threads ask at the same instant, and the parent prints, one line per
caller, the token it got (or its error) and the seconds the call took, tab-separated. The exit
status is 1 if a child died.

Usage: python tests/storm_worker.py DATABASE_URI INSTANCE_PATH CONNECTOR_ID PROCESSES THREADS
"""

import multiprocessing
import sys
import threading
import time

from mcpadmin import create_app
from mcpadmin.extensions import db
from mcpadmin.models import Connector
from mcpadmin.services import tokens


def child(uri, instance_path, connector_id, threads, loaded, go, results):
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": uri, "AUTO_MIGRATE": False, "ALLOW_PRIVATE_NETWORKS": True,
         "ALLOW_HTTP_LOOPBACK": True, "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": threads}},
        instance_path=instance_path,
    )  # fmt: skip

    def ask():
        with app.app_context():
            connector = db.session.get(Connector, connector_id)
            loaded.wait()
            go.wait()
            started = time.monotonic()
            try:
                got = tokens.access_token(connector, None)
            except Exception as exc:  # noqa: BLE001 - reported to the test
                got = f"ERROR {type(exc).__name__}: {exc}"
            results.put(f"{got}\t{time.monotonic() - started:.3f}")

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def main(uri, instance_path, connector_id, processes, threads):
    fork = multiprocessing.get_context("fork")
    loaded, go, results = fork.Barrier(processes * threads + 1), fork.Event(), fork.Queue()
    children = [
        fork.Process(target=child,
                     args=(uri, instance_path, connector_id, threads, loaded, go, results))
        for _ in range(processes)
    ]  # fmt: skip
    for process in children:
        process.start()
    loaded.wait(timeout=120)
    print("ready", flush=True)
    sys.stdin.readline()
    go.set()
    lines = [results.get(timeout=120) for _ in range(processes * threads)]
    for process in children:
        process.join()
    print("\n".join(lines), flush=True)
    sys.exit(1 if any(process.exitcode for process in children) else 0)


if __name__ == "__main__":
    uri, instance_path, connector_id, processes, threads = sys.argv[1:]
    main(uri, instance_path, int(connector_id), int(processes), int(threads))
