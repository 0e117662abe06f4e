"""The schema comes from Alembic migrations, and they match the models exactly."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from mcpadmin.extensions import db


def test_migrations_create_every_table_the_models_need(app):
    with app.app_context():
        tables = set(inspect(db.engine).get_table_names())
    assert {"admin_user", "connector", "agent", "agent_connection", "tool"} <= tables
    assert "alembic_version" in tables


def test_migrated_schema_matches_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []
