"""The schema comes from Alembic migrations, and they match the models exactly."""

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, select, text

from mcpadmin import MIGRATIONS
from mcpadmin.extensions import db
from mcpadmin.models import Connector, utcnow


def test_migrations_create_every_table_the_models_need(app):
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
    assert {"admin_user", "connector", "agent", "agent_connection", "tool"} <= tables
    assert "alembic_version" in tables


def test_migrated_schema_matches_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_upgrade_binds_grants_stored_before_to_the_connectors_issuer(app):
    """Tokens stored before grants were recorded keep working: 0005 binds them to the
    authorization server the connector names (and leaves pasted secrets alone)."""
    metadata = {"issuer": "https://auth.example.com", "token_endpoint": "https://auth.example.com/t",
                "revocation_endpoint": "https://auth.example.com/r"}  # fmt: skip
    with app.app_context():
        downgrade(directory=MIGRATIONS, revision="0004")
        try:
            with db.engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO connector (name, url, auth_type, credential_mode, status, "
                         "oauth_metadata, access_token_enc, created_at, updated_at) VALUES "
                         "('Old', 'https://mcp.example.com/mcp', 'oauth', 'shared', 'connected', "
                         ":meta, 'sealed', :now, :now), ('Keyed', 'https://k.example.com/mcp', "
                         "'bearer', 'shared', 'connected', NULL, NULL, :now, :now)"),
                    {"meta": json.dumps(metadata), "now": utcnow()},
                )  # fmt: skip
        finally:
            upgrade(directory=MIGRATIONS)
        grants = dict(db.session.execute(select(Connector.name, Connector.oauth_grant)).all())
    assert grants["Keyed"] is None
    assert grants["Old"]["issuer"] == "https://auth.example.com"
    assert grants["Old"]["token_endpoint"] == "https://auth.example.com/t"
    assert grants["Old"]["revocation_endpoint"] == "https://auth.example.com/r"
