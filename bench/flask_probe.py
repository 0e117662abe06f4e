"""``flask --app wsgi ARGS…`` in this process, then one JSON line on stderr with what it cost:
peak resident memory (``ru_maxrss``, KiB) and the most threads alive at once (sampled every
5 ms). Used by ``sync_all`` to show that memory and threads stay bounded.

Usage: python bench/flask_probe.py sync-tools [--workers N]
"""

import atexit
import json
import resource
import sys
import threading
import time

peak = {"threads": threading.active_count()}


def sample():
    while True:
        peak["threads"] = max(peak["threads"], threading.active_count())
        time.sleep(0.005)


def report():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"max_rss_kib": rss, "peak_threads": peak["threads"] - 1}), file=sys.stderr)


if __name__ == "__main__":
    from flask.cli import main

    threading.Thread(target=sample, daemon=True).start()  # not counted in peak_threads
    atexit.register(report)
    sys.argv = ["flask", "--app", "wsgi", *sys.argv[1:]]
    main()
