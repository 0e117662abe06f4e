"""Encryption keys gone wrong, and rotated right: a lost key, a key retired too early and
corrupted ciphertext leave every stored value as it was, pages and the CLI say to re-enter
the credential; ``flask rotate-keys`` moves every secret to the new key."""

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, Connector, OAuthClient, PendingAuthorization
from mcpadmin.services import admins, keys

REENTER = (b"must be re-entered", b"can no longer be decrypted")


def store_every_kind_of_secret(app) -> dict:
    """A row in every table with encrypted columns, every such column filled; return
    ``{(table, column): plaintext}``."""
    with app.app_context():
        shared = Connector(name="Shared", url="https://mcp.example.com/a", auth_type="oauth",
                           credential_mode="shared", status="connected",
                           access_token_enc=seal("shared-access"),
                           refresh_token_enc=seal("shared-refresh"),
                           oauth_client_id_enc=seal("client-id"),
                           oauth_client_secret_enc=seal("client-secret"))  # fmt: skip
        bearer = Connector(name="Bearer", url="https://mcp.example.com/b", auth_type="bearer",
                           credential_mode="per_agent")  # fmt: skip
        agent = Agent(name="Ada")
        connection = AgentConnection(agent=agent, connector=bearer, status="connected",
                                     secret_enc=seal("agent-key"))  # fmt: skip
        registration = OAuthClient(issuer="https://auth.example.com", redirect_uri="x",
                                   client_id_enc=seal("dcr-id"),
                                   client_secret_enc=seal("dcr-secret"),
                                   token_endpoint_auth_method="client_secret_post")  # fmt: skip
        keeper = admins.create_admin("keeper", "a long enough password")
        db.session.add_all([shared, bearer, agent, connection, registration, keeper])
        db.session.flush()
        pending = PendingAuthorization(
            nonce="n", connector_id=shared.id, admin_id=keeper.id, client_method="dcr",
            code_verifier_enc=seal("verifier"), token_endpoint="x", resource="x", redirect_uri="x",
        )  # fmt: skip
        db.session.add(pending)
        db.session.commit()
    return {
        ("connector", "access_token_enc"): "shared-access",
        ("connector", "refresh_token_enc"): "shared-refresh",
        ("connector", "oauth_client_id_enc"): "client-id",
        ("connector", "oauth_client_secret_enc"): "client-secret",
        ("agent_connection", "secret_enc"): "agent-key",
        ("oauth_client", "client_id_enc"): "dcr-id",
        ("oauth_client", "client_secret_enc"): "dcr-secret",
        ("pending_authorization", "code_verifier_enc"): "verifier",
    }


def raw_ciphertexts(app) -> dict:
    """Every non-null encrypted column, as stored: ``{(table, column, row id): text}``."""
    found = {}
    with app.app_context():
        for model, names in keys.encrypted_columns():
            table = model.__tablename__
            key = model.__mapper__.primary_key[0].name
            for name in names:
                rows = db.session.execute(
                    text(f"SELECT {key}, {name} FROM {table} WHERE {name} IS NOT NULL")  # noqa: S608
                )
                found.update({(table, name, row_id): value for row_id, value in rows})
    return found


def signed_in(app, logged_in):
    """A test client of ``app`` carrying ``logged_in``'s session (same database and secret)."""
    from tests.conftest import Browser

    browser = Browser(app.test_client())
    browser.set_cookie("mcpadmin_session", logged_in.get_cookie("mcpadmin_session").value)
    browser.token = logged_in.token
    return browser


def add_shared_bearer(app):
    with app.app_context():
        connector = Connector(name="Docs", url="http://127.0.0.1:9/mcp", auth_type="bearer",
                              credential_mode="shared", status="connected",
                              secret_enc=seal("shared-token"))  # fmt: skip
        db.session.add(connector)
        db.session.commit()
        return connector.id


# -- lost, retired, corrupted ---------------------------------------------------------------


def test_lost_key_pages_say_reenter_and_store_nothing(app, make_app, logged_in):
    store_every_kind_of_secret(app)
    before = raw_ciphertexts(app)
    stranger = make_app({"ENCRYPTION_KEYS": [Fernet.generate_key().decode()]})
    browser = signed_in(stranger, logged_in)
    with stranger.app_context():
        ids = [c.id for c in db.session.scalars(select(Connector))]
        agent_id = db.session.scalar(select(Agent.id))
    urls = ["/connectors/", "/agents/", f"/agents/{agent_id}"]
    urls += [f"/connectors/{i}{suffix}" for i in ids for suffix in ("", "/edit")]
    for url in urls:
        answer = browser.get(url)
        assert answer.status_code == 200, url
    assert any(m in browser.get("/connectors/").data for m in REENTER)
    assert any(m in browser.get(f"/agents/{agent_id}").data for m in REENTER)
    assert raw_ciphertexts(app) == before


def test_lost_key_sync_button_says_reenter_and_keeps_the_ciphertext(app, make_app, logged_in):
    connector_id = add_shared_bearer(app)
    before = raw_ciphertexts(app)
    stranger = make_app({"ENCRYPTION_KEYS": [Fernet.generate_key().decode()]})
    browser = signed_in(stranger, logged_in)
    answer = browser.post(f"/connectors/{connector_id}/sync", follow_redirects=True)
    assert answer.status_code == 200
    assert b"can no longer be decrypted: re-enter it" in answer.data
    assert raw_ciphertexts(app) == before


def test_retired_key_cli_sync_says_reenter_and_exits_1(app, make_app):
    # The key was dropped from ENCRYPTION_KEYS before rotate-keys moved the secrets off it.
    add_shared_bearer(app)
    before = raw_ciphertexts(app)
    retired = make_app({"ENCRYPTION_KEYS": [Fernet.generate_key().decode()]})
    result = retired.test_cli_runner().invoke(args=["sync-tools"])
    assert result.exit_code == 1
    assert "Docs: The stored credential can no longer be decrypted: re-enter it." in result.output
    assert "Traceback" not in result.output
    assert raw_ciphertexts(app) == before


@pytest.mark.parametrize("garbage", ["gAAAAAB-corrupted", "not even base64 !", ""])
def test_corrupted_ciphertext_pages_say_reenter_and_keep_it(app, logged_in, garbage):
    connector_id = add_shared_bearer(app)
    with app.app_context():
        db.session.execute(text("UPDATE connector SET secret_enc = :v"), {"v": garbage})
        db.session.commit()
    for url in ("/connectors/", f"/connectors/{connector_id}", f"/connectors/{connector_id}/edit"):
        answer = logged_in.get(url)
        assert answer.status_code == 200, url
        assert b"must be re-entered" in answer.data, url
    synced = logged_in.post(f"/connectors/{connector_id}/sync", follow_redirects=True)
    assert b"re-enter it" in synced.data
    with app.app_context():
        assert db.session.execute(text("SELECT secret_enc FROM connector")).scalar() == garbage


def test_rotate_keys_leaves_corrupted_ciphertext_and_rotates_the_rest(app, make_app):
    add_shared_bearer(app)
    store_every_kind_of_secret(app)
    with app.app_context():
        db.session.execute(
            text("UPDATE connector SET secret_enc = 'gAAAAAB-bad' WHERE name='Docs'")
        )
        db.session.commit()
    new_key = Fernet.generate_key().decode()
    both = make_app({"ENCRYPTION_KEYS": [new_key, app.config["ENCRYPTION_KEYS"][0]]})
    result = both.test_cli_runner().invoke(args=["rotate-keys"])
    assert result.exit_code == 1
    assert "Re-encrypted 8 secrets" in result.output
    assert "1 secret could not be decrypted" in result.output and "re-enter" in result.output
    with app.app_context():
        assert (
            db.session.execute(text("SELECT secret_enc FROM connector WHERE name='Docs'")).scalar()
            == "gAAAAAB-bad"
        )


# -- rotation round trip --------------------------------------------------------------------


def test_rotate_keys_round_trip_moves_every_secret_to_the_new_key(app, make_app):
    old_key = app.config["ENCRYPTION_KEYS"][0]
    plaintexts = store_every_kind_of_secret(app)
    before = raw_ciphertexts(app)

    # 1. New key first, old key still listed: everything reads, then rotate.
    new_key = Fernet.generate_key().decode()
    both = make_app({"ENCRYPTION_KEYS": [new_key, old_key]})
    result = both.test_cli_runner().invoke(args=["rotate-keys"])
    assert result.exit_code == 0, result.output
    assert f"Re-encrypted {len(plaintexts)} secrets" in result.output
    after = raw_ciphertexts(app)
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] for k in before)  # every value rewritten

    # 2. Retire the old key: every value decrypts with the new key alone, none with the old.
    only_new, only_old = Fernet(new_key.encode()), Fernet(old_key.encode())
    for (table, column, _), ciphertext in after.items():
        assert only_new.decrypt(ciphertext.encode()).decode() == plaintexts[(table, column)]
        with pytest.raises(Exception):  # noqa: B017 (InvalidToken)
            only_old.decrypt(ciphertext.encode())
    retired = make_app({"ENCRYPTION_KEYS": [new_key]})
    with retired.app_context():
        connector = db.session.scalar(select(Connector).filter_by(name="Shared"))
        assert connector.refresh_token_enc.reveal() == "shared-refresh"
        assert db.session.scalar(select(AgentConnection)).secret_enc.reveal() == "agent-key"

    # 3. Rotating again with only the new key changes nothing readable and loses nothing.
    again = retired.test_cli_runner().invoke(args=["rotate-keys"])
    assert again.exit_code == 0 and f"Re-encrypted {len(plaintexts)} secrets" in again.output
