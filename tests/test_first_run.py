"""First run and production: the README's gunicorn recipe on a fresh install, key files and the
secret key checked at start, the setup link (where it is printed, with which address, and
when it goes away)."""

import os
import re
import shlex
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import mcpadmin.config
from mcpadmin import create_app
from mcpadmin.config import MIN_SECRET_KEY_LENGTH, ConfigError, database_url
from mcpadmin.extensions import db
from tests.peers import free_port, terminate

ROOT = Path(__file__).resolve().parents[1]
BIN = os.path.dirname(sys.executable)
VALID_SECRET_KEY = "k" * MIN_SECRET_KEY_LENGTH
# Settings of the environment running the tests that would change what the app or gunicorn do.
OUTSIDE_SETTINGS = re.compile(
    r"^(MCPADMIN_.*|DATABASE_URL|WEB_CONCURRENCY|GUNICORN_.*|HOST|PORT|FORWARDED_ALLOW_IPS)$"
)
BOOT_DEADLINE = 120  # seconds; the slowest shared machine boots four workers well within it


def clean_environment(**settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not OUTSIDE_SETTINGS.match(k)}
    return {**env, **settings}


def readme_recipe() -> tuple[dict, list[str]]:
    """The production recipe as the README documents it: the ``export``ed settings and the
    gunicorn command line (with ``.venv/bin/`` meaning the environment running the tests)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", readme, re.DOTALL)
    (block,) = [b for b in blocks if "gunicorn -c" in b]
    exports, command = {}, None
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            exports.update(word.split("=", 1) for word in words[1:])
        elif "gunicorn" in words[0]:
            command = words
    assert command and command[0] == ".venv/bin/gunicorn", block
    return exports, [os.path.join(BIN, "gunicorn"), *command[1:]]


@pytest.fixture
def fresh_database(database_uri):
    """Settings for an empty database of the suite's kind: SQLite's zero-config default in the
    instance folder, or a new PostgreSQL schema (dropped afterwards)."""
    if database_uri.startswith("sqlite"):
        yield {}
        return
    schema = f"first_run_{uuid.uuid4().hex[:12]}"
    engine = create_engine(database_url(database_uri))
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in database_uri else "?"
    yield {"DATABASE_URL": f"{database_uri}{separator}options=-csearch_path%3D{schema}"}
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


class Recipe:
    """The README's production command running on a free port with its log in a file."""

    def __init__(self, tmp_path, settings):
        self.exports, command = readme_recipe()
        self.port = free_port()
        self.log_path = tmp_path / "gunicorn.log"
        self.instance = tmp_path / "instance"
        env = clean_environment(
            **self.exports, **settings, MCPADMIN_INSTANCE_PATH=str(self.instance),
            PORT=str(self.port), WEB_CONCURRENCY="4",
        )  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, predicate, deadline=BOOT_DEADLINE) -> bool:
        end = time.monotonic() + deadline
        while time.monotonic() < end and self.process.poll() is None:
            if predicate(self.log()):
                return True
            time.sleep(0.2)
        return predicate(self.log())

    def get(self, path) -> tuple[int, bytes]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=30) as answer:
            return answer.status, answer.read()

    def stop(self):
        terminate(self.process)


@pytest.fixture
def recipe(tmp_path, fresh_database):
    server = Recipe(tmp_path, fresh_database)
    # Every worker announces the setup link once its start is complete.
    server.wait_for(lambda log: log.count("Create one at") >= 4)
    yield server
    server.stop()


def test_readme_recipe_starts_four_workers_on_a_fresh_install(recipe):
    log = recipe.log()
    assert recipe.process.poll() is None, log
    assert recipe.get("/healthz") == (200, b'{"database":"ok","status":"ok"}\n')
    assert log.count("Booting worker") == 4, log
    for failure in ("Worker failed to boot", "exited with code", "Traceback", "already exists"):
        assert failure not in log
    base = recipe.exports["MCPADMIN_PUBLIC_BASE_URL"]
    assert set(re.findall(r"Create one at (\S+)/setup/", log)) == {base}


def test_readme_recipe_logs_paths_without_query_strings(recipe):
    recipe.get("/healthz?code=auth-code-0xDEADBEEF&state=state-0xFEEDFACE")
    assert recipe.wait_for(lambda log: "GET /healthz HTTP/1.1" in log, deadline=30), recipe.log()
    assert "0xDEADBEEF" not in recipe.log() and "0xFEEDFACE" not in recipe.log()


def test_readme_recipe_stops_with_the_fix_when_a_key_file_is_open_to_others(tmp_path):
    key_file = tmp_path / "instance" / "secret_key"
    key_file.parent.mkdir()
    key_file.write_text(VALID_SECRET_KEY + "\n")
    key_file.chmod(0o644)
    server = Recipe(tmp_path, {})
    try:
        server.process.wait(BOOT_DEADLINE)
    finally:
        server.stop()
    log = server.log()
    assert server.process.returncode != 0
    assert f"is open to other users (mode 644); it holds a secret. Make it private with: " \
           f"chmod 600 {key_file}" in log  # fmt: skip
    assert "Traceback" not in log and "Booting worker" not in log
    assert key_file.read_text() == VALID_SECRET_KEY + "\n"


@pytest.mark.parametrize("filename", ["secret_key", "encryption_keys", "setup_token"])
def test_key_file_readable_by_group_is_refused_naming_the_file_and_the_fix(tmp_path, filename):
    instance = tmp_path / "instance"
    instance.mkdir()
    contents = {
        "secret_key": VALID_SECRET_KEY,
        "encryption_keys": "4U4pZOZcFE5hAY2yYc-8-cI4lLQH3xSnt3bGvnMZ3Rk=",
        "setup_token": "a-setup-token",
    }
    path = instance / filename
    path.write_text(contents[filename] + "\n")
    path.chmod(0o640)
    with pytest.raises(ConfigError) as refused:
        create_app({"TESTING": True}, instance_path=str(instance))
    assert f"chmod 600 {path}" in str(refused.value)
    assert contents[filename] not in str(refused.value)
    assert path.read_text() == contents[filename] + "\n"


def test_secret_key_shorter_than_the_minimum_is_refused(tmp_path):
    short = "s" * (MIN_SECRET_KEY_LENGTH - 1)
    with pytest.raises(ConfigError, match=f"at least {MIN_SECRET_KEY_LENGTH} characters") as exc:
        create_app({"TESTING": True, "SECRET_KEY": short}, instance_path=str(tmp_path))
    assert short not in str(exc.value)


def test_cli_with_a_one_character_secret_key_says_why_it_cannot_start(tmp_path):
    result = flask_command(tmp_path, "create-admin", "alice", "--password-stdin",
                           MCPADMIN_SECRET_KEY="x")  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "mcpadmin cannot start: MCPADMIN_SECRET_KEY (or SECRET_KEY in instance/config.py) is "
        "too short: it needs at least "
        f"{MIN_SECRET_KEY_LENGTH} characters. Generate one with: "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
    )


def test_cli_with_an_encryption_key_that_is_not_a_fernet_key_says_why(tmp_path):
    result = flask_command(tmp_path, "create-admin", "alice", "--password-stdin",
                           MCPADMIN_ENCRYPTION_KEYS="not-a-key")  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        "mcpadmin cannot start: MCPADMIN_ENCRYPTION_KEYS (or ENCRYPTION_KEYS in "
        "instance/config.py) holds a value that"
    )
    assert "not-a-key" not in result.stderr


def test_a_starting_process_never_reads_a_half_written_key_file(tmp_path, monkeypatch):
    """Another process reads the key at the moment this one writes it: both get one whole
    value."""
    app = type("App", (), {"instance_path": str(tmp_path)})()
    seen_meanwhile = []
    real_fdopen = os.fdopen

    class Writer:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            seen_meanwhile.append(mcpadmin.config.instance_secret(app, "secret_key", "theirs"))
            return self.f.write(data)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fdopen(fd, *args, **kwargs):
        monkeypatch.setattr(os, "fdopen", real_fdopen)  # only the outer write is observed
        return Writer(real_fdopen(fd, *args, **kwargs))

    monkeypatch.setattr(os, "fdopen", fdopen)
    ours = mcpadmin.config.instance_secret(app, "secret_key", "ours")
    assert seen_meanwhile == [ours] and ours in ("ours", "theirs")
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["secret_key"]


def flask_command(tmp_path, *args, stdin="", **settings) -> subprocess.CompletedProcess:
    """``flask --app wsgi ARGS`` on the instance folder ``tmp_path/instance`` (SQLite there)."""
    env = clean_environment(MCPADMIN_INSTANCE_PATH=str(tmp_path / "instance"), **settings)
    return subprocess.run(
        [os.path.join(BIN, "flask"), "--app", "wsgi", *args],
        cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_create_admin_prints_no_setup_link_and_deletes_the_setup_token(tmp_path, caplog):
    served = create_app(instance_path=str(tmp_path / "instance"))  # as a first `flask run`
    with served.app_context():
        db.engine.dispose()
    token = tmp_path / "instance" / "setup_token"
    assert token.exists() and "/setup/" in caplog.text

    result = flask_command(tmp_path, "create-admin", "alice", "--password-stdin",
                           stdin="correct horse battery\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Owner alice created.\n"
    assert "/setup/" not in result.stdout + result.stderr
    assert not token.exists()


def test_serve_script_prints_the_setup_link_on_the_port_it_serves(tmp_path):
    """``scripts/serve`` as written, in a copy of the checkout whose install steps do nothing
    (no package index is reached) and whose ``uvicorn`` is the real one."""
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "scripts" / "serve").write_text((ROOT / "scripts" / "serve").read_text())
    (checkout / "asgi.py").symlink_to(ROOT / "asgi.py")
    (checkout / "pyproject.toml").symlink_to(ROOT / "pyproject.toml")
    fake_bin = tmp_path / "bin"
    for tool, body in {
        fake_bin / "python3": "exit 0",  # python3 -m venv .venv
        checkout / ".venv" / "bin" / "python": "exit 0",  # pip install
        checkout / ".venv" / "bin" / "uvicorn": f'exec {os.path.join(BIN, "uvicorn")} "$@"',
    }.items():
        tool.parent.mkdir(parents=True, exist_ok=True)
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    port = free_port()
    env = clean_environment(
        PORT=str(port), MCPADMIN_INSTANCE_PATH=str(tmp_path / "instance"),
        PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
    )  # fmt: skip
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(["bash", str(checkout / "scripts" / "serve")], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        end = time.monotonic() + BOOT_DEADLINE
        while time.monotonic() < end and process.poll() is None:
            if "Create one at" in log_path.read_text():
                break
            time.sleep(0.2)
    finally:
        terminate(process)
    output = log_path.read_text()
    assert re.search(rf"Create one at http://127\.0\.0\.1:{port}/setup/\S+ ", output), output
