"""What an operator types and reads on a first run (issue 21, defects 4, 5, 11b and 14):
settings named as typed, loopback upstreams on a laptop, the host refusal page, the first
sync of a new connector, ``scripts/serve``'s reinstall and the dev server's colours."""

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from mcpadmin import config, create_app
from mcpadmin.config import ConfigError
from mcpadmin.extensions import db
from mcpadmin.logsafe import dev_server_line
from mcpadmin.models import AuditEvent, Connector, Tool
from mcpadmin.protocol.policy import Blocked, Policy
from mcpadmin.security import allowed_host, host_kind
from mcpadmin.services.outbound import http
from tests.gateway_helpers import serving

ROOT = Path(__file__).resolve().parents[1]
# Keys read under another name than MCPADMIN_<key> (DATABASE_URL is read bare as well).
NOT_PREFIXED = {"DATABASE_URL"}
KEYS = ({k for k in vars(config.Defaults) if k.isupper()}
        | {"SECRET_KEY", "ENCRYPTION_KEYS", "INSTANCE_PATH"}) - NOT_PREFIXED  # fmt: skip
# A key as a word, not a template's ``config.KEY`` lookup, nor named "in instance/config.py".
BARE_KEY = re.compile(r"(?<![A-Za-z0-9_])(?<!config\.)("
                      + "|".join(sorted(KEYS, key=len, reverse=True))
                      + r")(?![A-Za-z0-9_])(?! in instance/config\.py)")  # fmt: skip


# -- 4. every message names a setting as the operator types it ---------------------------------


def _sentences(path: Path):
    """The string literals of a module a person may read: messages, flashes, log lines and
    shell commands' help; not docstrings of code, nor a bare key (a ``config[...]`` lookup)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            is_command = any(
                "command" in ast.unparse(d) for d in getattr(node, "decorator_list", ())
            )
            if isinstance(body[0].value, ast.Constant) and not is_command:
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and id(node) not in docstrings and text not in KEYS:
            yield node.lineno, text


def test_every_setting_a_message_names_is_named_as_the_operator_types_it():
    modules = [*sorted((ROOT / "mcpadmin").rglob("*.py")), ROOT / "asgi.py", ROOT / "wsgi.py",
               ROOT / "gunicorn.conf.py"]  # fmt: skip
    bare = [f"{path.relative_to(ROOT)}:{line}: {text[:80]!r}"
            for path in modules for line, text in _sentences(path)
            if BARE_KEY.search(text)]  # fmt: skip
    for template in sorted((ROOT / "mcpadmin" / "templates").rglob("*.html")):
        for line, text in enumerate(template.read_text(encoding="utf-8").splitlines(), 1):
            if BARE_KEY.search(text):
                bare.append(f"{template.relative_to(ROOT)}:{line}: {text.strip()[:80]!r}")
    assert bare == [], "\n".join(bare)


def test_the_scan_sees_a_bare_setting_name():
    # The check above must be able to fail.
    assert BARE_KEY.search("set ALLOW_PRIVATE_NETWORKS to allow")
    assert not BARE_KEY.search("set MCPADMIN_ALLOW_PRIVATE_NETWORKS=1")
    assert not BARE_KEY.search("(or ALLOW_PRIVATE_NETWORKS in instance/config.py)")


def test_a_setting_is_named_in_both_places_it_can_be_set():
    assert config.setting_name("ALLOW_LOOPBACK") == "MCPADMIN_ALLOW_LOOPBACK"
    assert config.setting("ALLOW_LOOPBACK", "1") == (
        "MCPADMIN_ALLOW_LOOPBACK=1 (or ALLOW_LOOPBACK in instance/config.py)"
    )


def test_a_bad_setting_stops_the_start_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MCPADMIN_GATEWAY_THREADS", "many")
    with pytest.raises(ConfigError) as raised:
        create_app({"AUTO_MIGRATE": False}, instance_path=str(tmp_path))
    assert str(raised.value).startswith("MCPADMIN_GATEWAY_THREADS (or GATEWAY_THREADS in ")


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://127.0.0.1:8000/mcp", "MCPADMIN_ALLOW_LOOPBACK=1"),
        ("http://localhost:8000/mcp", "MCPADMIN_ALLOW_LOOPBACK=1"),
        ("http://[::1]:8000/mcp", "MCPADMIN_ALLOW_LOOPBACK=1"),
        ("http://[::ffff:127.0.0.1]/mcp", "MCPADMIN_ALLOW_LOOPBACK=1"),
        ("http://10.0.0.5/mcp", "MCPADMIN_ALLOW_PRIVATE_NETWORKS=1"),
        ("http://192.168.1.20/mcp", "MCPADMIN_ALLOW_PRIVATE_NETWORKS=1"),
    ],
)
def test_a_refused_address_names_the_setting_that_allows_it(url, named):
    with pytest.raises(Blocked) as refused:
        Policy().check_url(url)
    assert named in str(refused.value)
    other = {"MCPADMIN_ALLOW_LOOPBACK=1", "MCPADMIN_ALLOW_PRIVATE_NETWORKS=1"} - {named}
    assert other.pop() not in str(refused.value)


def test_a_name_resolving_to_loopback_names_the_loopback_setting():
    infos = [(2, 1, 6, "", ("127.0.0.1", 8000))]
    with pytest.raises(Blocked, match=r"127\.0\.0\.1, a loopback address.*ALLOW_LOOPBACK=1"):
        Policy().connectable("tools.internal", 8000, infos)


def test_metadata_addresses_name_no_setting():
    for policy in (Policy(), Policy(allow_private=True, allow_loopback=True)):
        with pytest.raises(Blocked) as refused:
            policy.check_url("http://169.254.169.254/latest/meta-data/")
        assert "never go there" in str(refused.value) and "MCPADMIN_" not in str(refused.value)


def test_allow_loopback_allows_this_machine_and_no_private_network(outbound, json_peer):
    client = outbound(timeout=5, allow_loopback=True)
    assert client.post(json_peer.url, json={}).status < 500  # reached the peer
    with pytest.raises(Blocked, match="private networks are off"):
        client.get("http://10.0.0.5/mcp")
    with pytest.raises(Blocked, match="loopback addresses are off"):
        outbound(timeout=5).get(json_peer.url)


@pytest.mark.parametrize(
    ("typed", "read"), [("1", True), ("true", True), ("on", True), ("0", False), ("off", False)]
)
def test_the_loopback_setting_is_read_from_the_environment(monkeypatch, make_app, typed, read):
    monkeypatch.setenv("MCPADMIN_ALLOW_LOOPBACK", typed)
    app = make_app({"ALLOW_PRIVATE_NETWORKS": False})
    assert app.config["ALLOW_LOOPBACK"] is read
    with app.app_context():
        assert http().policy.allow_loopback is read


def test_production_keeps_loopback_upstreams_refused(monkeypatch, tmp_path):
    # gunicorn.conf.py sets no MCPADMIN_ variable: the defaults hold.
    for name in ("MCPADMIN_ALLOW_LOOPBACK", "MCPADMIN_ALLOW_PRIVATE_NETWORKS"):
        monkeypatch.delenv(name, raising=False)
    app = create_app({"AUTO_MIGRATE": False}, instance_path=str(tmp_path))
    assert app.config["ALLOW_LOOPBACK"] is False and app.config["ALLOW_PRIVATE_NETWORKS"] is False
    assert "MCPADMIN_ALLOW" not in (ROOT / "gunicorn.conf.py").read_text()


def test_an_on_off_setting_that_is_neither_stops_the_start(monkeypatch, tmp_path):
    monkeypatch.setenv("MCPADMIN_ALLOW_LOOPBACK", "of")  # a typo must not mean on
    with pytest.raises(ConfigError, match=r"^MCPADMIN_ALLOW_LOOPBACK \(or ALLOW_LOOPBACK in "
                       r"instance/config.py\) must be 1 or 0"):  # fmt: skip
        create_app({"AUTO_MIGRATE": False}, instance_path=str(tmp_path))


def test_an_http_oauth_endpoint_on_this_machine_names_the_http_loopback_setting():
    from mcpadmin.protocol.endpoints import InsecureEndpoint, check_endpoint

    with pytest.raises(InsecureEndpoint, match="set MCPADMIN_ALLOW_HTTP_LOOPBACK=1"):
        check_endpoint("http://127.0.0.1:9000/authorize")
    with pytest.raises(InsecureEndpoint) as refused:
        check_endpoint("http://auth.example/authorize", allow_http_loopback=True)
    assert "ALLOW_HTTP_LOOPBACK" not in str(refused.value)  # no setting makes that one safe


# -- 11b. a new connector is synced at once when it can be -------------------------------------


def connector_form(**fields):
    return {"name": "Docs", "auth_type": "none", "credential_mode": "shared", **fields}


@pytest.fixture
def laptop(make_app, client, admin):
    """The test client signed in to an app that allows loopback, not private networks (what
    ``scripts/serve`` sets)."""
    from tests.conftest import PASSWORD, Browser

    app = make_app({"ALLOW_PRIVATE_NETWORKS": False, "ALLOW_LOOPBACK": True, "TESTING": True})
    browser = Browser(app.test_client())
    assert browser.post("/login", data={"username": admin, "password": PASSWORD}).status_code == 302
    browser.get("/connectors/")
    return app, browser


def stored_connector(app, name="Docs"):
    with app.app_context():
        connector = db.session.scalar(select(Connector).where(Connector.name == name))
        db.session.expunge(connector)
        return connector


def test_a_new_connector_without_auth_is_synced_at_once(laptop, json_peer):
    app, browser = laptop
    page = browser.post("/connectors/new", data=connector_form(url=json_peer.url),
                        follow_redirects=True).get_data(as_text=True)  # fmt: skip
    assert "Connector Docs created." in page and "Synced Docs: 4 tools" in page
    connector = stored_connector(app)
    assert connector.status == "connected" and connector.last_synced_at is not None
    with app.app_context():
        assert db.session.query(Tool).filter_by(connector_id=connector.id).count() == 4
        actions = db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions[-2:] == ["connector.created", "connector.tools_synced"]


def test_a_new_connector_with_a_pasted_token_is_synced_with_it(laptop, bearer_peer):
    app, browser = laptop
    form = connector_form(url=bearer_peer.url, auth_type="bearer", secret="peer-token")
    page = browser.post("/connectors/new", data=form, follow_redirects=True).get_data(as_text=True)
    assert "Synced Docs:" in page and "Sync of Docs failed" not in page
    assert stored_connector(app).status == "connected"


def test_a_failed_first_sync_is_a_sentence_and_the_connector_stays(make_app, client, admin):
    # Production settings: the loopback server is refused, and the sentence says how to allow it.
    from tests.conftest import PASSWORD, Browser

    app = make_app({"ALLOW_PRIVATE_NETWORKS": False, "TESTING": True})
    browser = Browser(app.test_client())
    browser.post("/login", data={"username": admin, "password": PASSWORD})
    browser.get("/connectors/")
    response = browser.post("/connectors/new", data=connector_form(url="http://127.0.0.1:9/mcp"),
                            follow_redirects=True)  # fmt: skip
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Connector Docs created." in page
    assert "Sync of Docs failed" in page and "MCPADMIN_ALLOW_LOOPBACK=1" in page
    connector = stored_connector(app)
    assert connector.status == "error" and "MCPADMIN_ALLOW_LOOPBACK" in connector.last_error


def test_a_new_oauth_connector_is_not_synced_before_connect(laptop, json_peer):
    app, browser = laptop
    form = connector_form(url=json_peer.url, auth_type="oauth")
    page = browser.post("/connectors/new", data=form, follow_redirects=True).get_data(as_text=True)
    assert "Connect it to list its tools." in page and "Synced" not in page
    assert stored_connector(app).last_synced_at is None


def test_a_new_per_agent_connector_says_its_agents_come_first(laptop, bearer_peer):
    app, browser = laptop
    form = connector_form(url=bearer_peer.url, auth_type="bearer", credential_mode="per_agent")
    page = browser.post("/connectors/new", data=form, follow_redirects=True).get_data(as_text=True)
    assert "Nothing to sync yet: its tools are listed when an agent connects" in page
    assert "failed" not in page and stored_connector(app).last_synced_at is None


# -- 5. one host for a loopback server; a readable page for any other ---------------------------


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1:5000", "served"),
        ("localhost:5000", "loopback"),
        ("LOCALHOST.:5000", "loopback"),
        ("[::1]:5000", "loopback"),
        ("[0:0::1]:5000", "loopback"),
        ("localhost:5001", None),  # another port is another service
        ("localhost", None),
        ("127.0.0.2:5000", None),
        ("evil.localhost:5000", None),
        ("rebind.example:5000", None),
    ],
)
def test_loopback_names_are_one_host_for_a_loopback_server(host, kind):
    assert host_kind(host, "http://127.0.0.1:5000", []) == kind
    assert allowed_host(host, "http://127.0.0.1:5000", []) is (kind is not None)


def test_a_public_server_stays_strict_about_loopback_names():
    assert not allowed_host("localhost:443", "https://admin.example", [])
    assert not allowed_host("127.0.0.1", "https://admin.example", [])
    assert host_kind("localhost", "http://localhost", ["127.0.0.1"]) == "served"


def test_over_uvicorn_localhost_goes_to_the_public_address(app):
    with serving(app) as server:
        port = server.url.rsplit(":", 1)[1]
        plain = requests.get(server.url + "/login", allow_redirects=False, timeout=5)
        alias = requests.get(server.url + "/login?next=%2Fagents%2F",
                             headers={"Host": f"localhost:{port}"}, allow_redirects=False,
                             timeout=5)  # fmt: skip
        headers = {"Host": f"localhost:{port}", "Accept": "application/json"}
        agent = requests.post(server.url + "/agents/1/mcp", json={}, headers=headers, timeout=5)
    assert plain.status_code == 200
    assert alias.status_code == 302
    assert alias.headers["Location"] == f"{server.url}/login?next=%2Fagents%2F"
    assert "Unknown host" not in agent.text  # agents reach the data plane by either name


def test_over_uvicorn_a_foreign_host_gets_a_page_naming_the_address_and_settings(app):
    with serving(app) as server:
        refused = requests.get(server.url + "/connectors/", headers={"Host": "rebind.example"},
                               timeout=5)  # fmt: skip
        css = requests.get(server.url + "/static/app.css", headers={"Host": "rebind.example"},
                           timeout=5)  # fmt: skip
    assert refused.status_code == 400
    page = refused.text
    assert f'<a href="{server.url}/">{server.url}</a>' in page
    assert "<code>rebind.example</code>" in page
    assert "MCPADMIN_EXTRA_HOSTS (or EXTRA_HOSTS in instance/config.py)" in page
    assert "MCPADMIN_PUBLIC_BASE_URL (or PUBLIC_BASE_URL in instance/config.py)" in page
    assert 'href="/static/app.css"' in page
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")


def test_a_hostile_host_is_shown_escaped(client):
    answer = client.get("/login", headers={"Host": "<script>x</script>"})
    assert answer.status_code == 400 and b"<script>x" not in answer.data


def test_a_post_from_a_loopback_alias_is_refused_not_redirected(client):
    answer = client.post("/login", headers={"Host": "[::1]:5000"})
    assert answer.status_code == 400 and b"Unknown host" in answer.data


# -- 14. first-run rough edges --------------------------------------------------------------------


def test_the_dev_server_banner_is_plain_text_off_a_terminal():
    banner = ("\x1b[31m\x1b[1mWARNING: This is a development server.\x1b[0m\n"
              " * Running on http://127.0.0.1:5000")  # fmt: skip
    assert dev_server_line(banner, terminal=False) == (
        "WARNING: This is a development server.\n * Running on http://127.0.0.1:5000"
    )
    assert dev_server_line(banner, terminal=True) == banner


def test_a_dev_server_line_still_cannot_start_a_forged_record():
    line = dev_server_line("GET /x\n[2026] WARNING in auth: No admin\x07\n", terminal=False)
    assert line == "GET /x\n  [2026] WARNING in auth: No admin\\x07"


def test_flask_run_prints_the_banner_without_escaped_colour_codes(tmp_path):
    env = {**os.environ, "MCPADMIN_INSTANCE_PATH": str(tmp_path), "FLASK_RUN_PORT": "0"}
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "flask"), "--app", "wsgi", "run", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Running on" in line:
                break
    finally:
        process.terminate()
        process.wait(10)
        process.stdout.close()
    text = "".join(lines)
    assert "WARNING: This is a development server." in text
    assert "\\x1b" not in text and "\x1b" not in text and "\\x0a" not in text
    assert ".venv/bin/flask --app wsgi create-admin NAME" in text


def fake_checkout(tmp_path: Path) -> Path:
    """A copy of the repository's ``scripts/serve`` and ``pyproject.toml`` with a ``.venv``
    and a ``python3`` that write down what they are asked, and a ``uvicorn`` that prints the
    settings it was started with."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "serve", tmp_path / "scripts" / "serve")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    tools = {
        ".venv/bin/python": 'echo "python $*" >> "$CALLS"',
        ".venv/bin/uvicorn": 'echo "uvicorn $*"; env | grep ^MCPADMIN_ALLOW | sort',
        "bin/python3": 'echo "python3 $*" >> "$CALLS"',
    }
    for name, body in tools.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return tmp_path


def serve(checkout: Path, **env) -> tuple[str, list[str]]:
    calls = checkout / "calls"
    calls.write_text("")
    variables = {k: v for k, v in os.environ.items() if not k.startswith("MCPADMIN_")}
    variables |= {"PATH": f"{checkout / 'bin'}:{os.environ['PATH']}", "CALLS": str(calls), **env}
    done = subprocess.run(["bash", str(checkout / "scripts" / "serve")], env=variables,
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return done.stdout, calls.read_text().splitlines()


def test_serve_installs_only_when_pyproject_changes(tmp_path):
    checkout = fake_checkout(tmp_path)
    _, first = serve(checkout)
    assert first == ["python3 -m venv .venv",
                     "python -m pip install -q --disable-pip-version-check -e ."]  # fmt: skip
    _, again = serve(checkout)
    assert again == []
    with open(checkout / "pyproject.toml", "a") as f:
        f.write("\n# a new dependency\n")
    _, changed = serve(checkout)
    assert len(changed) == 2


def test_serve_allows_loopback_upstreams_and_says_so(tmp_path):
    output, _ = serve(fake_checkout(tmp_path))
    assert ("Loopback MCP servers (127.0.0.1, localhost) are allowed: MCPADMIN_ALLOW_LOOPBACK=1"
            in output)  # fmt: skip
    assert "set by scripts/serve" in output and "production (gunicorn) stays strict" in output
    assert "MCPADMIN_ALLOW_LOOPBACK=1\n" in output and "MCPADMIN_ALLOW_HTTP_LOOPBACK=1\n" in output
    assert "uvicorn asgi:app --host 127.0.0.1 --port 5000" in output


def test_serve_keeps_loopback_off_when_the_operator_says_so(tmp_path):
    output, _ = serve(fake_checkout(tmp_path), MCPADMIN_ALLOW_LOOPBACK="0")
    assert "Loopback MCP servers are refused: MCPADMIN_ALLOW_LOOPBACK=0." in output
    assert "MCPADMIN_ALLOW_LOOPBACK=0\n" in output
