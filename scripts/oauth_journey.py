"""Walk the OAuth Connect round trip by hand in headless Chromium and take screenshots.

Run from the repository root:

    .venv/bin/python scripts/oauth_journey.py

It starts the OAuth test peer (tests/peers/oauth_server.py: an OAuth-protected MCP server with
an auto-approving /authorize and three tools) and ``flask run`` with a throwaway instance folder,
both on free 127.0.0.1 ports. In the browser it signs in, creates a shared OAuth connector,
connects it (app -> peer's /authorize -> app's /oauth/callback), opens the connector page, then
creates a per-agent OAuth connector and an agent and connects the agent from its page. PNGs go to
docs/screenshots/oauth-*.png. Nothing but 127.0.0.1 is contacted: the browser aborts any request
to another host. Needs Debian's /usr/bin/chromium. Exits non-zero, with the app's and the peer's
log tails, when a step fails.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from screenshots import swap_fields  # noqa: E402  (scripts/ is on the path)

from tests.peers import start as start_peer  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
USERNAME, PASSWORD = "demo", "demo-password-123"
SHARED, PER_AGENT, AGENT = "Peer (shared)", "Peer (per agent)", "Ada"
PEER_TOOLS = 3
LOG_TAIL = 60  # lines of each log shown on failure
SERVER_ERROR = re.compile(r'Traceback|" 5\d\d ')  # in the app's log


class StepFailed(RuntimeError):
    pass


def step(number, text, url):
    print(f"[{number}] {text}\n    at {url}")


def tail(text, lines=LOG_TAIL):
    return "\n".join(text.splitlines()[-lines:])


def wait_until_up(base, server, log, timeout=30):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore *_proxy
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise StepFailed(f"the app exited with code {server.returncode}")
        try:
            with opener.open(base + "/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise StepFailed(f"the app did not answer on {base} within {timeout}s")


def create_connector(page, base, name, url, mode):
    page.goto(base + "/connectors/new")
    page.fill("input[name=name]", name)
    page.fill("input[name=url]", url)
    swap_fields(page, lambda: page.select_option("select[name=auth_type]", "oauth"))
    radio = f"input[name=credential_mode][value={mode}]"
    if not page.is_checked(radio):
        swap_fields(page, lambda: page.check(radio))
    with page.expect_navigation():
        page.click("button:has-text('Create connector')")
    if not page.url.endswith("/connectors/"):
        errors = page.locator(".error").all_inner_texts()
        raise StepFailed(f"creating connector {name!r} failed at {page.url}: {errors}")


def flashes(page):
    return [" ".join(t.split()) for t in page.locator("#flashes .flash").all_inner_texts()]


def expect_success_flash(page, who):
    """The callback's "Connected <who>: N tools available." flash, else fail with what's shown."""
    wanted = f"Connected {who}: {PEER_TOOLS} tools available."
    shown = flashes(page)
    if not any(wanted in text for text in shown):
        errors = page.locator(".error").all_inner_texts()
        raise StepFailed(
            f"expected flash {wanted!r} at {page.url}; flashes {shown}, errors {errors}"
        )
    return wanted


def connect_via_peer(page, click, peer_base, back_url):
    """Click Connect, check the browser went through the peer's /authorize and the app's
    /oauth/callback, and wait until it is back on ``back_url``; return those two URLs (no query)."""
    visited = []

    def note_request(request):
        if request.is_navigation_request() and request.frame == page.main_frame:
            visited.append(request.url)

    page.on("request", note_request)
    try:
        with page.expect_navigation(url=back_url, timeout=20_000):
            click()
        page.wait_for_load_state()
    finally:
        page.remove_listener("request", note_request)
    authorize = [u for u in visited if u.startswith(peer_base + "/authorize")]
    callback = [u for u in visited if "/oauth/callback" in u]
    if not authorize or not callback:
        raise StepFailed(
            f"the Connect round trip did not pass the peer's /authorize and the app's "
            f"/oauth/callback; navigations: {visited}; flashes: {flashes(page)}"
        )
    return authorize[0].split("?")[0], callback[0].split("?")[0]


def drive(base, peer_base):
    mcp_url = peer_base + "/mcp"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(10_000)
        # Let requests to the app and the peer through; abort any other.
        local = re.compile(f"({re.escape(base)}|{re.escape(peer_base)})/")
        context.route(lambda url: not local.match(url), lambda route: route.abort())
        page = context.new_page()

        def shoot(name):
            page.screenshot(path=OUT / name, full_page=True)
            print("    wrote", OUT / name)

        # 3. Sign in, create the shared connector, Connect it from the index.
        page.goto(base + "/login")
        page.fill("input[name=username]", USERNAME)
        page.fill("input[name=password]", PASSWORD)
        page.click("button:has-text('Sign in')")
        page.wait_for_url("**/connectors/")
        step("3a", f"signed in as {USERNAME}", page.url)
        create_connector(page, base, SHARED, mcp_url, "shared")
        page.goto(base + "/connectors/")  # without the "Connector created" flash
        row = page.locator("tr", has=page.locator(f"a:text-is('{SHARED}')"))
        connect = row.locator("button:has-text('Connect')")
        if connect.count() != 1:
            raise StepFailed(f"no Connect button on the {SHARED!r} row: {row.inner_text()!r}")
        step("3b", f"created {SHARED!r} ({mcp_url}, OAuth, shared)", page.url)
        shoot("oauth-index-before.png")
        authorize, callback = connect_via_peer(
            page, connect.click, peer_base, base + "/connectors/"
        )
        flash = expect_success_flash(page, SHARED)
        cells = [" ".join(t.split()) for t in row.locator("td").all_inner_texts()]
        status, tools = cells[3], cells[4]  # after Server, Auth, Mode (the name is a <th>)
        if not status.startswith("Connected") or tools != str(PEER_TOOLS):
            raise StepFailed(f"the {SHARED!r} row shows status {status!r}, tools {tools!r}")
        step("3c", f"via {authorize} and {callback}; {status}, {tools} tools; {flash!r}", page.url)
        shoot("oauth-index-after.png")

        # 4. The connector page: OAuth facts and discovery log.
        row.locator(f"a:text-is('{SHARED}')").click()
        page.wait_for_selector("h1")
        for heading in ("OAuth", "What discovery tried"):
            if page.locator(f"h2:text-is('{heading}')").count() != 1:
                raise StepFailed(f"no {heading!r} section on {page.url}")
        steps = page.locator("#discovery-heading + table tbody tr").count()
        step("4", f"connector page: OAuth facts, {steps} discovery steps", page.url)
        shoot("oauth-connector.png")

        # 5. A per-agent connector and an agent; Connect from the agent's page.
        create_connector(page, base, PER_AGENT, mcp_url, "per_agent")
        step("5a", f"created {PER_AGENT!r} ({mcp_url}, OAuth, per agent)", page.url)
        page.goto(base + "/agents/new")
        page.fill("input[name=name]", AGENT)
        page.fill("textarea[name=description]", "Tries the per-agent OAuth connector.")
        page.click("button:has-text('Create agent')")
        page.wait_for_url(lambda u: u.split("#")[0].rstrip("/").rsplit("/", 1)[-1].isdigit())
        agent_url = page.url.split("#")[0]
        step("5b", f"created agent {AGENT!r}", agent_url)
        page.goto(agent_url)  # without the "Agent created" flash
        card = page.locator(
            "article.connector-card", has=page.locator(f"h3:text-is('{PER_AGENT}')")
        )
        connect = card.locator("button:has-text('Connect')")
        if connect.count() != 1:
            raise StepFailed(f"no Connect button on the {PER_AGENT!r} card: {card.inner_text()!r}")
        authorize, callback = connect_via_peer(
            page, connect.click, peer_base, lambda u: u.split("#")[0] == agent_url
        )
        flash = expect_success_flash(page, f"{AGENT} on {PER_AGENT}")
        if card.locator(".badge:text-is('Token configured')").count() != 1:
            raise StepFailed(f"no 'Token configured' on the card: {card.inner_text()!r}")
        boxes = card.locator("input[type=checkbox][name=tools]").count()
        if boxes != PEER_TOOLS:
            raise StepFailed(f"{boxes} tool checkboxes on the card, expected {PEER_TOOLS}")
        step("5c", f"Connect went via {authorize} and {callback}; flash {flash!r}", page.url)
        shoot("oauth-agent.png")
        browser.close()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    peer = server = None
    with tempfile.TemporaryDirectory(prefix="mcpadmin-oauth-") as tmp:
        log = Path(tmp, "server.log")
        log.touch()
        try:
            # 1. The OAuth test peer.
            peer = start_peer("oauth_server.py")
            step(1, "OAuth peer is up", peer.base_url + "/mcp")

            # 2. The app, allowed to talk OAuth to a plain-http loopback peer.
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            base = f"http://127.0.0.1:{port}"
            env = dict(os.environ, MCPADMIN_PUBLIC_BASE_URL=base, FLASK_DEBUG="0",
                       MCPADMIN_ALLOW_PRIVATE_NETWORKS="true",
                       MCPADMIN_ALLOW_HTTP_LOOPBACK="true",
                       DATABASE_URL=f"sqlite:///{tmp}/s.sqlite3")  # fmt: skip
            # A throwaway instance folder, so the repo's instance/ keeps its keys and database.
            app = f"mcpadmin:create_app(instance_path={str(Path(tmp, 'instance'))!r})"
            flask = [sys.executable, "-m", "flask", "--app", app]
            made = subprocess.run(  # noqa: S603
                [*flask, "create-admin", USERNAME, "--password-stdin"], cwd=ROOT,
                env=env, input=PASSWORD + "\n", capture_output=True, text=True, check=False,
            )  # fmt: skip
            if made.returncode:
                raise StepFailed(f"create-admin failed:\n{made.stdout}{made.stderr}")
            with open(log, "w") as log_file:
                server = subprocess.Popen(  # noqa: S603
                    [*flask, "run", "--host", "127.0.0.1", "--port", str(port)],
                    cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                )  # fmt: skip
            wait_until_up(base, server, log)
            step(2, "app is up", base)

            drive(base, peer.base_url)
            trouble = [line for line in log.read_text().splitlines() if SERVER_ERROR.search(line)]
            if trouble:
                raise StepFailed("the app logged errors during the journey: " + "; ".join(trouble))
            print("OAuth journey OK")
        except (PlaywrightError, RuntimeError) as exc:
            peer_log = tail(peer.log()) if peer else "(peer not started)"
            sys.exit(
                f"OAuth journey failed: {exc}\n"
                f"--- app log (last {LOG_TAIL} lines) ---\n{tail(log.read_text())}\n"
                f"--- peer log (last {LOG_TAIL} lines) ---\n{peer_log}"
            )
        finally:
            if server is not None:
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            if peer is not None:
                peer.stop()


if __name__ == "__main__":
    main()
