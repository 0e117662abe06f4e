"""Fixtures: an app per test on a database migrated once per session and emptied after each
test; ``TEST_DATABASE_URL`` points the whole suite at PostgreSQL instead of SQLite.

Under pytest-xdist (``-n 2``, as ``scripts/test`` runs the suite) each worker is a session of
its own: its own SQLite file, or its own PostgreSQL database named after the one in
``TEST_DATABASE_URL`` (``test`` gives ``test_gw0``, ``test_gw1``...), created on first use, so
one worker emptying its tables never deletes the rows of a test running in another."""

import os
import re

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import create_engine, make_url, text, update
from werkzeug.security import generate_password_hash

from mcpadmin import create_app
from mcpadmin.config import database_url
from mcpadmin.extensions import db
from mcpadmin.models import AdminUser, CatalogState, Role
from mcpadmin.services import calllog

PASSWORD = "correct horse battery"

# Hypothesis times each example (200 ms) and the drawing of inputs (1 s) against a machine it
# assumes idle; the suite runs four workers on two CPUs beside peers and gunicorn, where a draw
# once took 0.98 s (test_scrub) with nothing wrong. What the properties assert is unchanged.
settings.register_profile("suite", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("suite")

pytest_plugins = [
    "tests.peers.oauth_fixtures",
    "tests.peers.mcp_fixtures",
    "tests.peers.oidc_fixtures",
    "tests.gateway_helpers",
    "tests.outbound_clients",
]


@pytest.fixture(scope="session")
def database_uri(tmp_path_factory):
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "test.sqlite3")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker:
        url = worker_database(url, worker)
    engine = create_engine(database_url(url))
    with engine.begin() as conn:  # start from an empty schema, whatever an earlier run left
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


def worker_database(url, worker):
    """The URL of xdist worker ``worker``'s own database beside the one ``url`` names, created
    through ``url``'s connection (the CI's ``postgres`` role may create databases) when absent.
    The URL keeps its own spelling (``postgresql://``): subprocesses get it as it is."""
    name = f"{make_url(url).database}_{worker}"
    engine = create_engine(database_url(url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                              {"name": name}).scalar()  # fmt: skip
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def app(database_uri, tmp_path):
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_uri,
            # The peers run on 127.0.0.1 over plain http.
            "ALLOW_PRIVATE_NETWORKS": True,
            "ALLOW_HTTP_LOOPBACK": True,
            # Flask's test client sends ``Host: localhost``.
            "EXTRA_HOSTS": ["localhost"],
            # No webhook notifier thread in ASGI tests (tests call ``webhooks.notify``).
            "NOTIFY_INTERVAL": 0,
        },
        instance_path=str(tmp_path / "instance"),
    )
    yield app
    empty_database(app)


def empty_database(app):
    """Delete every row a test made (the catalog version's row, made by the migration, stays,
    its version raised) and close the app's connections. Call log rows still queued are
    dropped first, so none is written after the tables are emptied."""
    calllog.discard(app)
    with app.app_context():
        db.session.remove()
        with db.engine.begin() as conn:
            for table in reversed(db.metadata.sorted_tables):
                if table.name != CatalogState.__tablename__:
                    conn.execute(table.delete())
            # Raw deletes raise no catalog version, and SQLite reuses the ids they free: a
            # served app (the session live server) would answer the next test's new agent from
            # its cache of an old one.
            conn.execute(update(CatalogState).values(version=CatalogState.version + 1))
        db.engine.dispose()


@pytest.fixture
def make_app(database_uri, app):
    """Build more apps on the test database (other keys, other config); closed after the test."""
    made = []

    def make(config=None, **kwargs):
        kwargs.setdefault("instance_path", app.instance_path)
        config = {
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "EXTRA_HOSTS": ["localhost"],
            "NOTIFY_INTERVAL": 0,
            **(config or {}),
        }
        extra = create_app(config, **kwargs)
        made.append(extra)
        return extra

    yield make
    for extra in made:
        calllog.discard(extra)
        with extra.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def client(app):
    return Browser(app.test_client())


@pytest.fixture
def admin(app, password_hash):
    """The test admin, stored with a hash computed once per run."""
    with app.app_context():
        db.session.add(AdminUser(username="admin", password_hash=password_hash))
        db.session.commit()
        return "admin"


@pytest.fixture(scope="session")
def password_hash():
    """Scrypt at a work factor of 2^10 instead of Werkzeug's 2^15: every sign-in checks it, and
    at the default each check costs 0.1 s of CPU, some 80 s a run over the suite's sign-ins.
    The app's own hashes (``create-admin``, ``test_auth``) keep the default."""
    return generate_password_hash(PASSWORD, method="scrypt:1024:8:1")


@pytest.fixture
def logged_in(client, admin):
    response = client.post("/login", data={"username": admin, "password": PASSWORD})
    assert response.status_code == 302
    client.get("/connectors/")  # signing in starts a new session, so a new CSRF token
    return client


@pytest.fixture
def people(app, password_hash):
    """One active person of each role, named after it (``owner``, ``operator``, ``auditor``,
    ``member``), plus a second member ``member2``; all with the test password."""
    with app.app_context():
        for name, role in (*((r, r) for r in Role.ALL), ("member2", Role.MEMBER)):
            db.session.add(AdminUser(username=name, password_hash=password_hash, role=role))
        db.session.commit()
    return {"owner", "operator", "auditor", "member", "member2"}


@pytest.fixture
def sign_in(app, people):
    """``sign_in(name)``: a new ``Browser`` signed in as one of ``people``."""

    def sign_in(name):
        browser = Browser(app.test_client())
        response = browser.post("/login", data={"username": name, "password": PASSWORD})
        assert response.status_code == 302, response.data[:500]
        # Signing in starts a new session, so a new CSRF token: read it from the home page.
        browser.get("/", follow_redirects=True)
        return browser

    return sign_in


class Browser:
    """A test client that carries the CSRF token like the pages do: as a form field for plain
    posts, as the ``X-CSRFToken`` header (from ``<body hx-headers>``) for htmx posts."""

    def __init__(self, client):
        self.client = client
        self.token = None

    def get(self, url, **kwargs):
        response = self.client.get(url, **kwargs)
        self._remember_token(response)
        return response

    def post(self, url, data=None, csrf=True, **kwargs):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self._csrf())
        return self.client.post(url, data=data, **kwargs)

    def hx_post(self, url, data=None, **kwargs):
        headers = {"HX-Request": "true", "X-CSRFToken": self._csrf()}
        return self.client.post(url, data=data or {}, headers=headers, **kwargs)

    def hx_get(self, url, **kwargs):
        return self.client.get(url, headers={"HX-Request": "true"}, **kwargs)

    def _csrf(self):
        if self.token is None:
            self.get("/login")
        return self.token

    def _remember_token(self, response):
        match = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', response.data)
        match = match or re.search(rb'"X-CSRFToken": "([^"]+)"', response.data)
        if match:
            self.token = match.group(1).decode()

    def __getattr__(self, name):
        return getattr(self.client, name)
