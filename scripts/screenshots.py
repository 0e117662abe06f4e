"""Take the documentation screenshots of mcpadmin with a real server and headless Chromium.

Run from the repository root:

    .venv/bin/python scripts/screenshots.py

It starts ``flask run`` on a free 127.0.0.1 port with a throwaway instance folder and SQLite
database, creates an admin, adds a few connectors and an agent through the UI and writes PNGs
to docs/screenshots/. Nothing but 127.0.0.1 is contacted: creating connectors only stores data,
and the browser aborts any request to another host. Needs Debian's /usr/bin/chromium.
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
USERNAME, PASSWORD = "demo", "demo-password-123"
CONNECTORS = [  # name, url, auth_type, credential_mode, extra fields
    ("Linear", "https://mcp.linear.app/mcp", "oauth", "shared", {}),
    ("Sentry", "https://mcp.sentry.dev/mcp", "oauth", "per_agent", {}),
    ("Render", "https://mcp.render.com/mcp", "bearer", "per_agent", {}),
    ("Internal tools", "https://tools.internal.example/mcp", "api_key_header", "shared",
     {"api_key_header_name": "X-API-Key", "secret": "not-a-real-key-0123456789"}),
]  # fmt: skip


def wait_until_up(base, server, log, timeout=30):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"Server exited with code {server.returncode}:\n{log.read_text()}")
        try:
            with opener.open(base + "/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"Server did not answer on {base} within {timeout}s:\n{log.read_text()}")


def swap_fields(page, action):
    """Run ``action`` (it changes a control) and wait until htmx has swapped #auth-fields."""
    with page.expect_response(lambda r: "/connectors/fields" in r.url):
        action()
    page.wait_for_function("!document.querySelector('.htmx-request,.htmx-swapping,.htmx-settling')")


def fill_connector(page, name, url, auth, mode="shared", extra=()):
    page.fill("input[name=name]", name)
    page.fill("input[name=url]", url)
    swap_fields(page, lambda: page.select_option("select[name=auth_type]", auth))
    radio = f"input[name=credential_mode][value={mode}]"
    if not page.is_checked(radio):
        swap_fields(page, lambda: page.check(radio))
    for field, value in dict(extra).items():
        page.fill(f"input[name={field}]", value)


def drive(base):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(10_000)
        # Let requests to the app through; abort any that would leave 127.0.0.1.
        local = re.compile(re.escape(base) + "/")
        context.route(lambda url: not local.match(url), lambda route: route.abort())
        page = context.new_page()

        def shoot(name):
            page.screenshot(path=OUT / name, full_page=True)
            print("wrote", OUT / name)

        page.goto(base + "/login")
        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", PASSWORD)
        page.click("button:has-text('Sign in')")
        page.wait_for_url("**/connectors/")
        page.reload()  # without the "Signed in" flash
        shoot("connectors-empty.png")
        for name, url, auth, mode, extra in CONNECTORS:
            page.goto(base + "/connectors/new")
            fill_connector(page, name, url, auth, mode, extra)
            with page.expect_navigation():
                page.click("button:has-text('Create connector')")
            if not page.url.endswith("/connectors/"):
                errors = page.locator(".error").all_inner_texts()
                raise RuntimeError(f"creating connector {name!r} failed: {errors}")
        page.goto(base + "/connectors/")
        shoot("connectors-index.png")
        page.goto(base + "/connectors/new")
        fill_connector(page, "GitHub", "https://api.githubcopilot.com/mcp/", "oauth")
        page.click("summary:has-text('Advanced OAuth settings')")
        shoot("connector-form.png")
        page.goto(base + "/agents/new")
        page.fill("input[name=name]", "Support bot")
        page.fill("textarea[name=description]", "Answers customer tickets with Linear and Sentry.")
        page.click("button:has-text('Create agent')")
        page.wait_for_url(lambda u: u.rstrip("/").rsplit("/", 1)[-1].isdigit())
        page.reload()  # without the "Agent created" flash
        shoot("agent-page.png")
        browser.close()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mcpadmin-shots-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base, log = f"http://127.0.0.1:{port}", Path(tmp, "server.log")
        env = dict(os.environ, MCPADMIN_PUBLIC_BASE_URL=base, FLASK_DEBUG="0",
                   DATABASE_URL=f"sqlite:///{tmp}/s.sqlite3")  # fmt: skip
        # A throwaway instance folder, so the repo's instance/ keeps its keys and database.
        app = f"mcpadmin:create_app(instance_path={str(Path(tmp, 'instance'))!r})"
        flask = [sys.executable, "-m", "flask", "--app", app]
        made = subprocess.run(  # noqa: S603
            [*flask, "create-admin", USERNAME, "--password-stdin"],
            env=env, input=PASSWORD + "\n", capture_output=True, text=True, check=False,
        )  # fmt: skip
        if made.returncode:
            sys.exit(f"create-admin failed:\n{made.stdout}{made.stderr}")
        with open(log, "w") as log_file:
            server = subprocess.Popen(  # noqa: S603
                [*flask, "run", "--host", "127.0.0.1", "--port", str(port)],
                env=env, stdout=log_file, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            wait_until_up(base, server, log)
            drive(base)
        except (PlaywrightError, RuntimeError) as exc:
            sys.exit(f"Screenshots failed: {exc}\n--- server log ---\n{log.read_text()}")
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


if __name__ == "__main__":
    main()
