"""The app under gunicorn (4 uvicorn workers) keeps serving the admin pages without a single error
while ``flask sync-tools`` syncs 100 connectors against real MCP peers on the same database.
Run with ``-s`` to see the figures."""

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests
from sqlalchemy import func, select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, Connector, Tool
from tests.conftest import PASSWORD
from tests.peers import free_port

CONNECTORS, PAGE_THREADS, SYNC_WORKERS = 100, 3, 8
BIN = os.path.dirname(sys.executable)


@pytest.fixture
def environment(app, database_uri):
    """What gunicorn and the ``flask`` command need to run this test's app: its database,
    its instance folder (so the same secret and encryption keys), loopback peers allowed."""
    factory = f"mcpadmin:create_app(instance_path={app.instance_path!r})"
    env = {
        **os.environ,
        "MCPADMIN_SQLALCHEMY_DATABASE_URI": database_uri,
        "MCPADMIN_AUTO_MIGRATE": "false",
        "MCPADMIN_ALLOW_PRIVATE_NETWORKS": "true",
        "MCPADMIN_ALLOW_HTTP_LOOPBACK": "true",
    }
    return factory, env


@pytest.fixture
def gunicorn(environment):
    """``gunicorn -w 4`` (uvicorn workers) serving the app; yields its base URL (its
    ``PUBLIC_BASE_URL``: any other Host and port is refused)."""
    factory, env = environment
    port = free_port()
    server = subprocess.Popen(
        [os.path.join(BIN, "gunicorn"), "-w", "4", "-b", f"127.0.0.1:{port}", "--preload",
         "-k", "mcpadmin.gateway.worker.Worker",
         factory.replace("mcpadmin:create_app", "mcpadmin.gateway.app:create_asgi_app")],
        env={**env, "MCPADMIN_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if requests.get(base + "/healthz", timeout=5).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.2)
    assert server.poll() is None, server.stderr.read()
    yield base
    server.send_signal(signal.SIGTERM)
    server.communicate(timeout=30)


def add_connectors(app, bearer_peer, modern_peer) -> list[int]:
    """Half on the bearer-protected peer, half on the open one."""
    with app.app_context():
        connectors = []
        for n in range(CONNECTORS):
            if n % 2:
                connector = Connector(name=f"Load {n:03}", url=modern_peer.url)
            else:
                connector = Connector(name=f"Load {n:03}", url=bearer_peer.url,
                                      auth_type="bearer", status="connected",
                                      secret_enc=seal("peer-token"))  # fmt: skip
            connectors.append(connector)
        db.session.add_all([*connectors, Agent(name="Ada"), Agent(name="Grace")])
        db.session.commit()
        return [c.id for c in connectors]


def signed_in(base, username) -> requests.Session:
    browser = requests.Session()
    page = browser.get(base + "/login", timeout=30).text
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    answer = browser.post(
        base + "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token},
        timeout=30,
    )
    assert answer.status_code == 200 and "Signed in" in answer.text, answer.text
    return browser


def browse(browser, base, connector_ids, stop, served, errors):
    """Fetch the admin pages until ``stop``; count answers, record anything not a 200."""
    pages = itertools.cycle(connector_ids)
    while not stop.is_set():
        for path in ("/connectors/", "/agents/", f"/connectors/{next(pages)}"):
            try:
                answer = browser.get(base + path, timeout=30, allow_redirects=False)
            except requests.RequestException as exc:
                errors.append(f"{path}: {exc!r}")
                continue
            served.append(path)
            if answer.status_code != 200:
                errors.append(f"{path}: {answer.status_code}")


def test_pages_keep_serving_while_sync_tools_syncs_a_hundred_connectors(
    app, admin, environment, gunicorn, bearer_peer, modern_peer
):
    connector_ids = add_connectors(app, bearer_peer, modern_peer)
    factory, env = environment
    stop, served, errors = threading.Event(), [], []
    browsers = [signed_in(gunicorn, admin) for _ in range(PAGE_THREADS)]
    threads = [
        threading.Thread(target=browse, args=(b, gunicorn, connector_ids, stop, served, errors))
        for b in browsers
    ]
    for thread in threads:
        thread.start()

    started = time.monotonic()
    try:
        sync = subprocess.run(
            [
                os.path.join(BIN, "flask"),
                "--app",
                factory,
                "sync-tools",
                "--workers",
                str(SYNC_WORKERS),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        took = time.monotonic() - started
        stop.set()
        for thread in threads:
            thread.join(60)
    figures = (
        f"load on {app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]}: sync-tools synced "
        f"{CONNECTORS} connectors in {took:.1f} s while gunicorn served {len(served)} pages "
        f"to {PAGE_THREADS} threads with {len(errors)} errors"
    )
    print("\n" + figures)

    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert f"{CONNECTORS} synced, 0 skipped (fresh), 0 failed." in sync.stdout, sync.stdout
    with app.app_context():
        synced = db.session.scalar(
            select(func.count()).select_from(Connector).where(Connector.last_synced_at.is_not(None))
        )
        with_tools = db.session.scalar(select(func.count(func.distinct(Tool.connector_id))))
    assert synced == with_tools == CONNECTORS
    assert errors == [], figures
    assert served, figures
