"""mcpadmin: connect AI agents to remote MCP servers and keep their credentials working."""

import os

import click
from flask import Flask, g, redirect, url_for
from flask.cli import FlaskGroup
from flask_migrate import upgrade
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import (
    config,
    crypto,
    errors,
    filters,
    jsonlog,
    logsafe,
    requestlog,
    roles,
    security,
    startup,
)
from .extensions import csrf, db, migrate

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")


def create_app(test_config=None, instance_path=None):
    """Build the app; on first start create the schema, keys and the admin setup link.

    ``instance_path`` (else ``MCPADMIN_INSTANCE_PATH``, else ``instance/``) holds the SQLite
    database, the generated keys and the setup token. Processes starting at once upgrade the
    schema one after the other. The setup link is logged when the app is built to serve, not
    for a shell command such as ``flask create-admin``.

    :raise config.ConfigError: a key file is open to other users, SECRET_KEY or METRICS_TOKEN
        is too short, an encryption key is not a Fernet key, ``PUBLIC_BASE_URL`` names no
        host, or a number setting is not a whole number (or, for the days logs are kept, not
        1 or more).
    """
    logsafe.install()
    instance_path = instance_path or os.environ.get("MCPADMIN_INSTANCE_PATH") or None
    app = Flask(__name__, instance_relative_config=True, instance_path=instance_path)
    config.load(app, test_config)
    jsonlog.install(app)
    crypto.init_app(app)
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS)
    requestlog.init_app(app)
    security.init_app(app)
    csrf.init_app(app)
    filters.init_app(app)

    from . import (
        agents,
        attention,
        auth,
        cli,
        connectors,
        console,
        health,
        metrics,
        oauth,
        people,
        records,
        settings,
        sso,
        tools,
    )

    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(connectors.bp)
    app.register_blueprint(agents.bp)
    app.register_blueprint(console.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(records.bp)
    app.register_blueprint(attention.bp)
    app.context_processor(attention.nav_badge)
    app.register_blueprint(tools.bp)
    app.register_blueprint(people.bp)
    app.register_blueprint(sso.bp)
    app.register_blueprint(settings.bp)
    cli.init_app(app)

    app.jinja_env.globals["can"] = roles.can

    @app.get("/")
    @roles.allow(roles.Access.SIGNED_IN)
    def index():
        """The connectors for those who see them, else (members) their agents."""
        if roles.permits(g.admin, roles.Access.READ):
            return redirect(url_for("connectors.index"))
        return redirect(url_for("agents.index"))

    errors.init_app(app)

    if app.config["AUTO_MIGRATE"]:
        with app.app_context(), startup.exclusive(db.engine, app.instance_path):
            upgrade(directory=MIGRATIONS)
            if not _running_shell_command():
                auth.announce_setup_link(app)
    return app


def _running_shell_command() -> bool:
    """Whether the ``flask`` command loads the app for a command other than ``run``: Flask
    loads it inside ``run``'s own context, and for every other command while still in the
    group's. Another program's command line (``uvicorn asgi:app``) is no shell command."""
    context = click.get_current_context(silent=True)
    if context is None or not isinstance(context.find_root().command, FlaskGroup):
        return False
    return context.info_name != "run"


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """SQLite: enforce foreign keys (cascading deletes), wait for locks, write-ahead log."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Write-ahead log: a commit appends to the log instead of rewriting and syncing a rollback
        # journal (most of a sync's time went there), and readers never wait for a writer.
        # ``synchronous`` stays FULL: a rotated refresh token must survive a power cut.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()
