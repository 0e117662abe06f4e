"""Browser fixtures: the app as a real server process (gunicorn) on 127.0.0.1, driven by
Debian's headless Chromium through Playwright, against the real MCP and OAuth peers.

Every page a test opens records console errors, uncaught exceptions, failed requests and htmx
requests answered with an error; the test fails at teardown if there were any. Screenshots go to
``artifacts/browser/`` (``shoot``); ``scripts/refresh-screenshots`` copies the README's set.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from mcpadmin.extensions import db
from mcpadmin.services import admins
from tests.conftest import PASSWORD
from tests.peers import free_port, terminate

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / ".node" / "node_modules" / "axe-core" / "axe.min.js"
USERNAME = "admin"

# Report htmx failures on the console, where the error collector sees them. Init scripts are
# injected by the browser itself, so the page's Content-Security-Policy does not apply to them.
HTMX_WATCH = """
for (const name of ['htmx:responseError', 'htmx:sendError', 'htmx:swapError',
                    'htmx:targetError', 'htmx:onLoadError']) {
  document.addEventListener(name, (event) => {
    const path = event.detail && event.detail.pathInfo ? event.detail.pathInfo.requestPath : '';
    const status = event.detail && event.detail.xhr ? event.detail.xhr.status : '';
    console.error(name + ' ' + status + ' ' + path);
  });
}
"""


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log_path: str
    instance: str

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def setup_link(self) -> str:
        """The first-run link the server printed (built from its PUBLIC_BASE_URL)."""
        match = re.search(r"Create one at (\S+/setup/\S+)", self.log())
        assert match, "no setup link in the server log:\n" + self.log()
        return match.group(1)

    def stop(self):
        terminate(self.process)


def start_live_server(
    database_uri: str,
    instance: str,
    timeout: float = 30,
    workers: int = 1,
    port: int = 0,
    env: dict | None = None,
) -> LiveServer:
    """Run the app as the README's production recipe does (``gunicorn -c gunicorn.conf.py
    asgi:app``: uvicorn workers) on a free port, with its own instance folder (keys, setup
    token) and the test database; return once ``/healthz`` answers.

    :raise RuntimeError: the server exited or did not answer in time (its log is attached).
    """
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "DATABASE_URL": database_uri,
        "MCPADMIN_INSTANCE_PATH": instance,
        "MCPADMIN_PUBLIC_BASE_URL": url,
        "MCPADMIN_ALLOW_PRIVATE_NETWORKS": "true",  # the peers live on 127.0.0.1
        "MCPADMIN_ALLOW_HTTP_LOOPBACK": "true",
        "MCPADMIN_NOTIFY_INTERVAL": "0",  # tests send webhooks themselves
        **(env or {}),
    }
    log = tempfile.NamedTemporaryFile("wb", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "asgi:app"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=env,
    )
    log.close()
    server = LiveServer(url, process, log.name, instance)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with opener.open(url + "/healthz", timeout=2):
                return server
        except OSError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"the app did not start on {url}:\n{server.log()}")


@pytest.fixture(scope="session")
def live_server(database_uri, tmp_path_factory):
    server = start_live_server(database_uri, str(tmp_path_factory.mktemp("live-instance")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chromium():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/browser-deps (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@dataclass
class Problems:
    """What went wrong in the page while the test ran; ``allow`` lists expected patterns."""

    seen: list[str] = field(default_factory=list)
    allow: list[str] = field(default_factory=list)

    def add(self, text: str):
        self.seen.append(text)

    def unexpected(self) -> list[str]:
        return [p for p in self.seen if not any(re.search(a, p) for a in self.allow)]


@pytest.fixture
def problems():
    return Problems()


@pytest.fixture
def page(chromium, app, live_server, problems):
    """A fresh browser tab on an empty database, failing the test on any page error.

    Depends on ``app`` so the tables are emptied after the test; requests to anything but
    127.0.0.1 are aborted."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/])"), lambda route: route.abort())
    context.add_init_script(HTMX_WATCH)
    tab = context.new_page()
    tab.on("console", lambda m: m.type == "error" and problems.add(f"console: {m.text}"))
    tab.on("pageerror", lambda exc: problems.add(f"page error: {exc}"))
    tab.on("requestfailed", lambda r: problems.add(f"request failed: {r.url} {r.failure}"))
    problems.allow.append(r"net::ERR_ABORTED")  # a load cut short by the next navigation

    def on_response(response):
        if response.request.headers.get("hx-request") and response.status >= 400:
            problems.add(f"htmx {response.status}: {response.url}")

    tab.on("response", on_response)
    yield tab
    context.close()
    unexpected = problems.unexpected()
    assert not unexpected, "the page reported problems:\n" + "\n".join(unexpected)


@pytest.fixture
def signed_in(page, app, live_server):
    """``page`` signed in as a fresh admin through the login form."""
    with app.app_context():
        admins.create_admin(USERNAME, PASSWORD)
        db.session.commit()
    page.goto(live_server.url + "/login")
    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/connectors/$"))
    return page


def shoot(page, name: str):
    """Save a full-page screenshot as ``artifacts/browser/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png", full_page=True)


def settle(page):
    """Wait until htmx has finished every request, swap and settle."""
    # A function, not an expression: Playwright evaluates expressions with eval(), which the
    # page's CSP (no 'unsafe-eval') refuses.
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
    )


def axe_violations(page, impacts=("serious", "critical")) -> list[str]:
    """Run axe-core (from the npm registry, see scripts/browser-deps) on the page and describe
    the violations of the given impacts, one line per rule with the offending elements."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # As a function body: a <script> tag or an expression would need the CSP's consent.
        page.evaluate("() => {" + AXE.read_text() + "\n}")
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['impact']}: {v['id']} ({v['help']}): "
        + ", ".join(" ".join(node["target"]) for node in v["nodes"][:5])
        for v in result["violations"]
        if v["impact"] in impacts
    ]
