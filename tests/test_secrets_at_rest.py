"""Configuration secrets, encryption at rest, lost keys and key rotation."""

import os

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import text

from mcpadmin.config import database_url, key_list, load
from mcpadmin.crypto import Sealed, UnreadableSecret, seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector

TOKEN = "tok_live_8d7f6e5c4b3a2918"


def add_bearer_connector(token=TOKEN, per_agent=False):
    connector = Connector(
        name="Render", url="https://mcp.render.example/mcp", auth_type="bearer",
        credential_mode="per_agent" if per_agent else "shared",
        secret_enc=None if per_agent else seal(token),
    )  # fmt: skip
    db.session.add(connector)
    db.session.commit()
    return connector


def test_first_start_generates_keys_with_mode_0600(app):
    for name in ("secret_key", "encryption_keys"):
        path = os.path.join(app.instance_path, name)
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_generated_keys_survive_a_restart(app, make_app):
    again = make_app()
    assert again.config["SECRET_KEY"] == app.config["SECRET_KEY"]
    assert again.config["ENCRYPTION_KEYS"] == app.config["ENCRYPTION_KEYS"]


def test_environment_configures_the_app(monkeypatch, make_app, tmp_path):
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("MCPADMIN_ENCRYPTION_KEYS", key)
    monkeypatch.setenv("MCPADMIN_PUBLIC_BASE_URL", "https://admin.example/")
    monkeypatch.setenv("MCPADMIN_HTTP_TIMEOUT", "3")
    monkeypatch.setenv("MCPADMIN_ALLOW_PRIVATE_NETWORKS", "true")
    app = make_app(instance_path=str(tmp_path))
    assert app.config["ENCRYPTION_KEYS"] == [key]
    assert app.config["PUBLIC_BASE_URL"] == "https://admin.example"
    assert app.config["HTTP_TIMEOUT"] == 3.0
    assert app.config["ALLOW_PRIVATE_NETWORKS"] is True


def test_encryption_keys_accept_list_or_comma_string():
    assert key_list("a, b") == ["a", "b"]
    assert key_list(["a", " b "]) == ["a", "b"]


def test_postgres_urls_use_psycopg3():
    assert database_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert database_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert database_url("sqlite:///x") == "sqlite:///x"


def test_invalid_encryption_key_is_a_clear_startup_error(make_app):
    with pytest.raises(ValueError, match="not a Fernet key"):
        make_app({"ENCRYPTION_KEYS": ["nope"]})


def test_sealed_value_never_prints_its_plaintext(app):
    with app.app_context():
        sealed = seal(TOKEN)
        assert TOKEN not in repr(sealed) and TOKEN not in str(sealed)
        assert sealed.reveal() == TOKEN


def test_encrypted_column_refuses_plaintext(app):
    with app.app_context():
        db.session.add(Connector(name="x", url="https://x.example/mcp", secret_enc=TOKEN))
        with pytest.raises(Exception, match="never plaintext"):
            db.session.commit()
        db.session.rollback()


def test_raw_database_rows_hold_no_plaintext_secret(app):
    with app.app_context():
        connector = add_bearer_connector()
        agent = Agent(name="a")
        db.session.add(
            AgentConnection(agent=agent, connector=connector, secret_enc=seal("agent-secret-99"))
        )
        db.session.commit()
        dump = " ".join(
            str(row)
            for table in ("connector", "agent_connection")
            for row in db.session.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
        )
    assert TOKEN not in dump and "agent-secret-99" not in dump
    assert "gAAAA" in dump  # Fernet tokens


def test_lost_key_shows_credential_must_be_reentered(app, make_app, logged_in):
    with app.app_context():
        connector_id = add_bearer_connector().id
    other = make_app({"ENCRYPTION_KEYS": [Fernet.generate_key().decode()]})
    client = other.test_client()
    client.set_cookie("mcpadmin_session", logged_in.get_cookie("mcpadmin_session").value)
    for url in ("/connectors/", f"/connectors/{connector_id}", f"/connectors/{connector_id}/edit"):
        response = client.get(url)
        assert response.status_code == 200
        assert b"must be re-entered" in response.data


def test_corrupted_ciphertext_is_unreadable_not_an_error(app):
    with app.app_context():
        with pytest.raises(UnreadableSecret):
            Sealed("gAAAAAB-corrupted").reveal()
        assert not Sealed("not even base64 !").readable()


def test_rotate_keys_reencrypts_under_the_new_first_key(app, make_app):
    old_key = app.config["ENCRYPTION_KEYS"][0]
    with app.app_context():
        add_bearer_connector()
    new_key = Fernet.generate_key().decode()
    rotated = make_app({"ENCRYPTION_KEYS": [new_key, old_key]})
    result = rotated.test_cli_runner().invoke(args=["rotate-keys"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 1 secret under" in result.output
    only_new = make_app({"ENCRYPTION_KEYS": [new_key]})
    with only_new.app_context():
        assert db.session.query(Connector).one().secret_enc.reveal() == TOKEN


def test_rotate_keys_reports_unreadable_secrets_and_keeps_them(app, make_app):
    with app.app_context():
        add_bearer_connector()
        before = db.session.query(Connector).one().secret_enc
    stranger = make_app({"ENCRYPTION_KEYS": [Fernet.generate_key().decode()]})
    result = stranger.test_cli_runner().invoke(args=["rotate-keys"])
    assert result.exit_code == 1
    assert "could not be decrypted" in result.output
    with app.app_context():
        assert db.session.query(Connector).one().secret_enc == before


def test_default_sqlite_database_is_created_owner_only(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    bare = Flask("mcpadmin", instance_path=str(tmp_path), instance_relative_config=True)
    load(bare)
    path = tmp_path / "mcpadmin.sqlite3"
    assert bare.config["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{path}"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
