"""gunicorn settings for mcpadmin: ``.venv/bin/gunicorn -c gunicorn.conf.py asgi:app``.

gunicorn manages the processes; each worker is uvicorn (``mcpadmin.gateway.worker.Worker``:
uvloop and httptools) serving the one ASGI application: the agent data plane on the event
loop, the admin app on ``MCPADMIN_ADMIN_THREADS`` threads beside it.

Environment: ``HOST`` and ``PORT`` to listen on (``127.0.0.1:8000``: a reverse proxy with TLS
goes in front), ``WEB_CONCURRENCY`` worker processes (2; one per CPU is plenty: a held agent
stream costs a coroutine, not a thread), ``PROMETHEUS_MULTIPROC_DIR`` where the workers keep
their metrics (a private temporary directory, removed on exit, unless set). The app's own
settings are ``MCPADMIN_*`` (see the README).
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "mcpadmin.gateway.worker.Worker"
# A worker that stops answering the master (or takes longer than this to boot) is replaced.
timeout = 60
# On stop or reload, held streams end at once and requests in flight get this long to finish.
graceful_timeout = 30
keepalive = 5
# Only a proxy on this machine may set X-Forwarded-Proto (gunicorn's default, stated here).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# With MCPADMIN_LOG_FORMAT=json the app writes one JSON line per request instead. The worker
# writes access lines with the path only: OAuth callbacks carry the authorization code in the
# query string.
accesslog = None if os.environ.get("MCPADMIN_LOG_FORMAT") == "json" else "-"

# No runtime control socket: mcpadmin needs none, and instances on one host would share its path.
control_socket_disable = True

# Each worker counts its own metrics in files here and a scrape sums them (prometheus_client's
# multiprocess mode). Set before any worker (or ``--preload``) imports the app, and inherited by
# the workers; a reload reads this file again and keeps the directory already chosen.
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
# Names the directory this file made (and removes on exit), as opposed to one the operator set.
OWN_METRICS_DIR = "METRICS_DIR_MADE_BY_GUNICORN_CONF"
if not os.environ.get(METRICS_DIR):
    os.environ[METRICS_DIR] = os.environ[OWN_METRICS_DIR] = tempfile.mkdtemp(
        prefix="mcpadmin-metrics-"
    )


def on_starting(server):
    """Before any worker starts, load the admin app once in a child process: it checks the
    configuration and upgrades the schema (under the lock the workers take too), then prints
    the schema revision. A refused configuration stops gunicorn here with its reason, rather
    than in every worker at once. The master never imports the app, so a reload loads new code.

    :raise RuntimeError: the app could not be loaded (gunicorn prints it and exits 1).
    """
    _forget_old_metrics(os.environ[METRICS_DIR])
    check = [sys.executable, "-m", "flask", "--app", "wsgi:app", "db", "current"]
    # The command is fixed.
    if subprocess.run(check, cwd=server.cfg.chdir, check=False).returncode:  # noqa: S603
        on_exit(server)  # gunicorn stops here without calling it
        raise RuntimeError("mcpadmin did not start; the reason is above.")


def child_exit(server, worker):
    """A worker ended: its live gauges leave the scrape (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory this file made (one the operator named stays)."""
    if os.environ.get(OWN_METRICS_DIR) == os.environ.get(METRICS_DIR):
        shutil.rmtree(os.environ[METRICS_DIR], ignore_errors=True)


def _forget_old_metrics(directory):
    """Empty the metrics directory of a previous run's files (prometheus_client requires it
    between runs), creating it if missing: counters start from zero with the new master."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        os.remove(path)
