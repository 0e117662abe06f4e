"""Agent keys on the agent page and from the shell; the endpoint's configuration; each
connection's last call; the failure throttle the endpoint uses."""

import logging
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest

from mcpadmin.extensions import db
from mcpadmin.models import Agent, AgentConnection, AgentKey, Connector, utcnow
from mcpadmin.services import agent_keys
from mcpadmin.services.agent_keys import KeyStatus

KEY = re.compile(r"mcpa_[a-z2-7]{24}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def agent(app):
    with app.app_context():
        row = Agent(name="Support bot")
        db.session.add(row)
        db.session.commit()
        return row.id


def keys_url(agent):
    return f"/agents/{agent}/keys"


def stored_keys(app) -> list[AgentKey]:
    with app.app_context():
        rows = db.session.query(AgentKey).order_by(AgentKey.id).all()
        db.session.expunge_all()
        return rows


def make_key(app, agent, label="laptop", **columns) -> tuple[int, str]:
    with app.app_context():
        row, key = agent_keys.create(db.session.get(Agent, agent), label)
        for name, value in columns.items():
            setattr(row, name, value)
        db.session.commit()
        return row.id, key


def section(page, id_):
    start = page.index(f'id="{id_}"')
    return page[start : page.index("</section>", start)]


# --- creating a key on the page -------------------------------------------------------------


def test_key_created_over_htmx_is_shown_once_with_its_configuration(app, logged_in, agent):
    response = logged_in.hx_post(keys_url(agent), data={"label": "  laptop  "})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.lstrip().startswith('<section id="keys"')
    assert 'hx-target="this"' in page and 'hx-swap="outerHTML"' in page
    [key] = set(KEY.findall(page))
    assert "Copy it now: it is not shown again." in page
    assert f'data-copy="{key}"' in page
    # The snippets in the panel carry the real key; JSON inside an attribute is escaped.
    assert f"&#34;Authorization&#34;: &#34;Bearer {key}&#34;" in page
    assert f"KEY = &#34;{key}&#34;" in page
    [row] = stored_keys(app)
    assert row.label == "laptop" and row.expires_at is None
    assert agent_keys.lookup_of(key) == row.lookup
    with app.app_context():
        assert agent_keys.matches(db.session.get(AgentKey, row.id), key)


def test_key_is_never_shown_again_nor_logged(app, logged_in, agent, caplog):
    caplog.set_level(logging.DEBUG)
    key = KEY.search(logged_in.hx_post(keys_url(agent), data={"label": "ci"}).get_data(True))[0]
    secret = key.split("_", 2)[2]
    [row] = stored_keys(app)
    seen = [
        logged_in.get(f"/agents/{agent}").get_data(True),
        logged_in.get("/agents/").get_data(True),
        logged_in.get(f"/agents/{agent}/keys/{row.id}/revoke").get_data(True),
        logged_in.hx_post(keys_url(agent), data={"label": ""}).get_data(True),
        logged_in.hx_post(f"/agents/{agent}/keys/{row.id}/revoke").get_data(True),
        logged_in.get(f"/agents/{agent}").get_data(True),
        caplog.text,
    ]
    for text in seen:
        assert secret not in text
    assert agent_keys.display(row) in seen[0]
    with app.app_context():
        assert secret not in repr(db.session.get(AgentKey, row.id).__dict__)


def test_key_created_without_javascript_is_shown_on_the_page(app, logged_in, agent):
    response = logged_in.post(keys_url(agent), data={"label": "laptop", "lifetime": "30"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "Copy it now: it is not shown again." in page and KEY.search(page)
    assert response.headers["Cache-Control"] == "no-store"
    [row] = stored_keys(app)
    assert abs(row.expires_at - (utcnow() + timedelta(days=30))) < timedelta(minutes=1)


@pytest.mark.parametrize(("lifetime", "days"), [("", None), ("90", 90), ("365", 365)])
def test_key_lifetime_choices(app, logged_in, agent, lifetime, days):
    logged_in.hx_post(keys_url(agent), data={"label": "x", "lifetime": lifetime})
    [row] = stored_keys(app)
    if days is None:
        assert row.expires_at is None
    else:
        assert abs(row.expires_at - (utcnow() + timedelta(days=days))) < timedelta(minutes=1)


def test_key_until_a_date_expires_at_the_end_of_that_day(app, logged_in, agent):
    day = date.today() + timedelta(days=10)
    data = {"label": "x", "lifetime": "date", "until": day.isoformat()}
    logged_in.hx_post(keys_url(agent), data=data)
    [row] = stored_keys(app)
    assert row.expires_at == datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"label": "   "}, "This field is required."),
        ({"label": "x" * 101}, "Label is 101 characters long; it can have up to 100."),
        ({"label": "x", "lifetime": "date"}, "Choose the day the key expires."),
        ({"label": "x", "lifetime": "date", "until": date.today().isoformat()}, "after today"),
        ({"label": "x", "lifetime": "7"}, "Not a valid choice."),
    ],
)
def test_invalid_key_form_is_answered_in_the_partial(app, logged_in, agent, data, message):
    response = logged_in.hx_post(keys_url(agent), data=data)
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and message in page
    assert 'aria-invalid="true"' in page and not KEY.search(page)
    assert stored_keys(app) == []


def test_invalid_key_form_without_javascript_is_422(logged_in, agent):
    response = logged_in.post(keys_url(agent), data={"label": ""})
    assert response.status_code == 422 and "This field is required." in response.get_data(True)


def test_creating_a_key_needs_the_csrf_token(app, logged_in, agent):
    response = logged_in.post(keys_url(agent), data={"label": "x"}, csrf=False)
    assert response.status_code == 403
    assert stored_keys(app) == []


def test_creating_a_key_needs_a_signed_in_admin(app, client, agent):
    response = client.post(keys_url(agent), data={"label": "x"})
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert stored_keys(app) == []


def test_key_of_an_unknown_agent_is_404(logged_in):
    assert logged_in.hx_post("/agents/999999/keys", data={"label": "x"}).status_code == 404


# --- listing and revoking ---------------------------------------------------------------------


def test_empty_keys_section_says_what_to_do(logged_in, agent):
    keys = section(logged_in.get(f"/agents/{agent}").get_data(True), "keys")
    assert "No keys yet." in keys and "rotate a key without downtime" in keys


def test_keys_are_listed_with_dates_and_status(app, logged_in, agent):
    now = utcnow()
    make_key(app, agent, "old", revoked_at=now - timedelta(hours=1))
    make_key(app, agent, "stale", expires_at=now - timedelta(days=1))
    used, _ = make_key(app, agent, "ci", last_used_at=now - timedelta(minutes=3))
    keys = section(logged_in.get(f"/agents/{agent}").get_data(True), "keys")
    rows = {label: keys[keys.index(f">{label}</th>") :] for label in ("old", "stale", "ci")}
    assert rows["ci"].index("3 minutes ago") < rows["ci"].index("</tr>")
    assert "Active" in rows["ci"].split("</tr>")[0] and "never" in rows["ci"].split("</tr>")[0]
    assert "Expired" in rows["stale"].split("</tr>")[0]
    assert "Revoked" in rows["old"].split("</tr>")[0]
    assert 'class="key-revoked"' in keys and 'class="key-expired"' in keys
    # Newest first, and no revoke button on a revoked key.
    assert keys.index(">ci<") < keys.index(">stale<") < keys.index(">old<")
    assert keys.count(">Revoke<span") == 2


def test_revoke_over_htmx_keeps_the_key_listed_as_revoked(app, logged_in, agent):
    key_id, _ = make_key(app, agent)
    response = logged_in.hx_post(f"/agents/{agent}/keys/{key_id}/revoke")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and page.lstrip().startswith('<section id="keys"')
    assert "Revoked" in page and "Key laptop of Support bot revoked" in page
    assert 'hx-swap-oob="innerHTML"' in page
    [row] = stored_keys(app)
    assert row.revoked_at is not None and agent_keys.status(row) == KeyStatus.REVOKED


def test_revoke_button_asks_first(app, logged_in, agent):
    key_id, _ = make_key(app, agent)
    keys = section(logged_in.get(f"/agents/{agent}").get_data(True), "keys")
    assert 'hx-confirm="Revoke the key “laptop” of Support bot?' in keys
    assert f'method="get" action="/agents/{agent}/keys/{key_id}/revoke"' in keys


def test_revoke_without_javascript_confirms_on_a_page_then_redirects(app, logged_in, agent):
    key_id, _ = make_key(app, agent)
    url = f"/agents/{agent}/keys/{key_id}/revoke"
    confirm = logged_in.get(url).get_data(as_text=True)
    assert "Revoke the key “laptop”?" in confirm and "Cancel" in confirm
    assert stored_keys(app)[0].revoked_at is None
    response = logged_in.post(url)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/agents/{agent}#keys"
    assert stored_keys(app)[0].revoked_at is not None


def test_revoke_needs_the_csrf_token(app, logged_in, agent):
    key_id, _ = make_key(app, agent)
    response = logged_in.post(f"/agents/{agent}/keys/{key_id}/revoke", csrf=False)
    assert response.status_code == 403
    assert stored_keys(app)[0].revoked_at is None


def test_revoking_another_agents_key_is_404(app, logged_in, agent):
    key_id, _ = make_key(app, agent)
    with app.app_context():
        other = Agent(name="Other")
        db.session.add(other)
        db.session.commit()
        other_id = other.id
    assert logged_in.hx_post(f"/agents/{other_id}/keys/{key_id}/revoke").status_code == 404
    assert stored_keys(app)[0].revoked_at is None


def test_status_revoked_wins_over_expired():
    now = utcnow()
    row = AgentKey(revoked_at=now, expires_at=now - timedelta(days=1))
    assert agent_keys.status(row, now) == KeyStatus.REVOKED
    assert agent_keys.status(AgentKey(expires_at=now), now) == KeyStatus.EXPIRED
    assert agent_keys.status(AgentKey(expires_at=now + timedelta(1)), now) == KeyStatus.ACTIVE


# --- endpoint and client configuration --------------------------------------------------------


def test_endpoint_url_is_built_from_the_public_base_url(app, agent):
    app.config["PUBLIC_BASE_URL"] = "https://mcpadmin.example"
    with app.app_context():
        row = db.session.get(Agent, agent)
        assert agent_keys.endpoint_url(row) == f"https://mcpadmin.example/agents/{agent}/mcp"
        config = agent_keys.client_config(row)
    assert config.url == f"https://mcpadmin.example/agents/{agent}/mcp"
    assert '"support-bot": {' in config.mcp_servers
    assert '"Authorization": "Bearer <your key>"' in config.mcp_servers
    assert f'URL = "{config.url}"' in config.python and 'KEY = "<your key>"' in config.python


def test_client_configuration_is_valid_json_and_python(app, agent):
    import ast
    import json

    with app.app_context():
        config = agent_keys.client_config(db.session.get(Agent, agent), "mcpa_x")
    entry = json.loads(config.mcp_servers)["mcpServers"]["support-bot"]
    assert entry == {
        "type": "http",
        "url": config.url,
        "headers": {"Authorization": "Bearer mcpa_x"},
    }
    ast.parse(config.python)


def test_agent_page_shows_the_endpoint_with_placeholder_configuration(app, logged_in, agent):
    make_key(app, agent)
    endpoint = section(logged_in.get(f"/agents/{agent}").get_data(True), "endpoint")
    url = f"http://127.0.0.1:5000/agents/{agent}/mcp"
    assert f'<code id="endpoint-url">{url}</code>' in endpoint
    assert f'data-copy="{url}"' in endpoint
    assert "Bearer &lt;your key&gt;" in endpoint and "from mcp import Client" in endpoint
    assert not KEY.search(endpoint)


def test_agent_page_loads_the_copy_script_from_a_file(logged_in, agent):
    page = logged_in.get(f"/agents/{agent}").get_data(as_text=True)
    assert '<script src="/static/copy.js" defer></script>' in page
    script = logged_in.get("/static/copy.js")
    assert script.status_code == 200 and b"data-copy" in script.data
    script.close()


# --- the tool naming choice -------------------------------------------------------------------


def test_keep_tool_names_is_saved_with_the_agent_form(app, logged_in, agent):
    url = f"/agents/{agent}"
    logged_in.post(url, data={"name": "Support bot", "keep_tool_names": "y"})
    with app.app_context():
        assert db.session.get(Agent, agent).keep_tool_names is True
    assert '<input checked id="keep_tool_names"' in logged_in.get(url).get_data(True)
    logged_in.post(url, data={"name": "Support bot"})
    with app.app_context():
        assert db.session.get(Agent, agent).keep_tool_names is False


# --- each connection's last call --------------------------------------------------------------


@pytest.fixture
def called(app, agent):
    """A shared connector with one tool the agent may use, and its connection row's id."""
    with app.app_context():
        connector = Connector(name="Docs", url="https://d.example/mcp", status="connected")
        db.session.add(connector)
        db.session.flush()
        connection = AgentConnection(agent_id=agent, connector_id=connector.id, enabled_tools=[])
        db.session.add(connection)
        db.session.commit()
        return connection.id


def set_last_call(app, connection_id, error):
    with app.app_context():
        connection = db.session.get(AgentConnection, connection_id)
        connection.last_called_at = utcnow() - timedelta(minutes=3)
        connection.last_call_error = error
        db.session.commit()


def test_card_says_the_last_call_worked(app, logged_in, agent, called):
    set_last_call(app, called, None)
    page = logged_in.get(f"/agents/{agent}").get_data(as_text=True)
    assert re.search(r"Last call <time[^>]*>3 minutes ago</time>:\s*<span[^>]*>worked<", page)


def test_card_says_the_last_call_failed_and_why(app, logged_in, agent, called):
    set_last_call(app, called, "upstream <down>\u202e")
    page = logged_in.get(f"/agents/{agent}").get_data(as_text=True)
    assert "failed — upstream &lt;down&gt;" in page
    assert "U+202E" in page  # hidden characters shown, as elsewhere


def test_card_without_a_call_says_nothing_about_calls(logged_in, agent, called):
    assert "Last call" not in logged_in.get(f"/agents/{agent}").get_data(as_text=True)


# --- flask agent-key --------------------------------------------------------------------------


def test_cli_create_prints_the_key_once(app, runner, agent, caplog):
    caplog.set_level(logging.DEBUG)
    result = runner.invoke(args=["agent-key", "create", "support BOT", "--label", "ci"])
    assert result.exit_code == 0, result.output
    assert KEY.fullmatch(result.stdout.strip())
    assert "Copy it now: it is not shown again." in result.stderr
    assert result.stdout.strip() not in result.stderr + caplog.text
    [row] = stored_keys(app)
    assert row.label == "ci" and row.expires_at is None


def test_cli_create_with_expiry(app, runner, agent):
    args = ["agent-key", "create", "Support bot", "--label", "ci", "--expires-days", "7"]
    assert runner.invoke(args=args).exit_code == 0
    [row] = stored_keys(app)
    assert abs(row.expires_at - (utcnow() + timedelta(days=7))) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "Nobody", "--label", "x"], "Error: No agent named 'Nobody'."),
        (["create", "Support bot", "--label", " "], "Error: The label needs 1 to 100 characters."),
        (["revoke", "Support bot", "42"], "Error: Agent Support bot has no key with that id"),
        (["list", "Nobody"], "Error: No agent named 'Nobody'."),
    ],
)
def test_cli_errors_are_one_line_and_exit_1(runner, agent, args, message):
    result = runner.invoke(args=["agent-key", *args])
    assert result.exit_code == 1
    assert result.output.strip().startswith(message)
    assert len(result.output.strip().splitlines()) == 1


def test_cli_list_shows_keys_but_never_a_secret(app, runner, agent):
    runner.invoke(args=["agent-key", "create", "Support bot", "--label", "ci"])
    key_id, key = make_key(app, agent, "old", revoked_at=utcnow())
    result = runner.invoke(args=["agent-key", "list", "Support bot"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split("\t") == [
        "ID", "LABEL", "KEY", "CREATED", "LAST USED", "EXPIRES", "STATUS",
    ]  # fmt: skip
    old = lines[1].split("\t")  # newest first
    assert old[0] == str(key_id) and old[1] == "old" and old[4:] == ["never", "never", "revoked"]
    assert lines[2].split("\t")[-1] == "active"
    assert key.split("_", 2)[2] not in result.output
    assert not KEY.search(result.output)


def test_cli_list_without_keys(runner, agent):
    result = runner.invoke(args=["agent-key", "list", "Support bot"])
    assert result.exit_code == 0 and result.output == "Support bot has no keys.\n"


@pytest.mark.parametrize("by", ["id", "lookup", "display", "key"])
def test_cli_revoke_by_id_or_lookup(app, runner, agent, by):
    key_id, key = make_key(app, agent)
    [row] = stored_keys(app)
    reference = {
        "id": str(key_id),
        "lookup": row.lookup,
        "display": agent_keys.display(row),
        "key": key,
    }[by]
    result = runner.invoke(args=["agent-key", "revoke", "Support bot", reference])
    assert result.exit_code == 0, result.output
    assert result.output == f"Key {key_id} (laptop) of Support bot revoked.\n"
    assert stored_keys(app)[0].revoked_at is not None


def test_cli_revoke_of_an_unknown_key_does_not_repeat_it(runner, agent):
    key = "mcpa_" + "a" * 24 + "_" + "b" * 43
    result = runner.invoke(args=["agent-key", "revoke", "Support bot", key])
    assert result.exit_code == 1 and "b" * 43 not in result.output


# --- the failure throttle ---------------------------------------------------------------------


def test_failures_up_to_the_limit_then_a_refusal(app):
    app.config.update(AGENT_KEY_MAX_FAILURES=3, AGENT_KEY_LOCKOUT_SECONDS=300)
    now = utcnow()
    with app.app_context():
        assert agent_keys.refusal("203.0.113.9", now) is None
        assert agent_keys.count_failure("203.0.113.9", now) is None
        assert agent_keys.count_failure("203.0.113.9", now) is None
        assert agent_keys.count_failure("203.0.113.9", now) == 300
        assert agent_keys.refusal("203.0.113.9", now + timedelta(seconds=100)) == 200
        # Another address is not affected.
        assert agent_keys.refusal("203.0.113.10", now) is None


def test_refusal_ends_with_the_window(app):
    app.config.update(AGENT_KEY_MAX_FAILURES=1, AGENT_KEY_LOCKOUT_SECONDS=60)
    now = utcnow()
    with app.app_context():
        assert agent_keys.count_failure("198.51.100.1", now) == 60
        assert agent_keys.refusal("198.51.100.1", now + timedelta(seconds=59.5)) == 1
        assert agent_keys.refusal("198.51.100.1", now + timedelta(seconds=60)) is None
        # The next failure after the window counts as the first of a new one.
        app.config["AGENT_KEY_MAX_FAILURES"] = 2
        assert agent_keys.count_failure("198.51.100.1", now + timedelta(seconds=61)) is None


def test_failures_spread_over_more_than_a_window_are_not_refused(app):
    app.config.update(AGENT_KEY_MAX_FAILURES=2, AGENT_KEY_LOCKOUT_SECONDS=60)
    now = utcnow()
    with app.app_context():
        assert agent_keys.count_failure("192.0.2.7", now) is None
        assert agent_keys.count_failure("192.0.2.7", now + timedelta(seconds=61)) is None


def test_throttle_settings_are_integers_from_the_environment(make_app, monkeypatch):
    monkeypatch.setenv("MCPADMIN_AGENT_KEY_MAX_FAILURES", "7")
    monkeypatch.setenv("MCPADMIN_AGENT_KEY_LOCKOUT_SECONDS", "90")
    extra = make_app()
    assert extra.config["AGENT_KEY_MAX_FAILURES"] == 7
    assert extra.config["AGENT_KEY_LOCKOUT_SECONDS"] == 90


def test_throttle_defaults(app):
    assert app.config["AGENT_KEY_MAX_FAILURES"] == 20
    assert app.config["AGENT_KEY_LOCKOUT_SECONDS"] == 300


def test_python_snippet_runs_with_the_installed_sdk(app, agent, bearer_peer):
    """The page's Python code lists tools with the real ``mcp`` 2.x client (here against an
    upstream peer standing in for the endpoint, with that peer's bearer token)."""
    with app.app_context():
        code = agent_keys.python_snippet(db.session.get(Agent, agent), "peer-token")
    code = re.sub(r'^URL = ".*"$', f'URL = "{bearer_peer.url}"', code, flags=re.M)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[") and "'" in result.stdout
