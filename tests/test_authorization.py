"""Who may do what, route by route and shell command by shell command.

``EXPECTED`` and ``EXPECTED_CLI`` write out the issue's access matrix (not what the decorators
say): the access each route and each shell command needs. The tests check that

- every route and every command carries exactly that rule (a new route or command without
  one, or with another, fails until it is added to the table);
- each role (and anyone signed out) asking every route with real ids is refused (403 and an
  ``access.refused`` audit event) or not, as the table and the objects' reach say: a member
  reaches only their own agents, and only connectors made available to members;
- no page a role opens offers it a link, a form or an htmx request it may not follow;
- each role running every command ``--as`` themselves is refused or not likewise.
"""

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import click
import pytest
from flask import url_for
from sqlalchemy import func, select
from werkzeug.exceptions import MethodNotAllowed, NotFound

from mcpadmin import roles
from mcpadmin.extensions import db
from mcpadmin.models import (
    AuditEvent,
    Role,
)
from mcpadmin.roles import Access
from mcpadmin.services.audit import Action

from .conftest import PASSWORD, Browser
from .roles_helpers import WHOSE, build_world

PUBLIC, SIGNED_IN, READ = Access.PUBLIC, Access.SIGNED_IN, Access.READ
OPERATE, ADMINISTER = Access.OPERATE, Access.ADMINISTER
AGENT_READ, AGENT_CHANGE = Access.AGENT_READ, Access.AGENT_CHANGE

# Every route: the access its reading methods (GET, HEAD, OPTIONS: "get") and its other
# methods ("post") need. Add a new route here with what the matrix gives it.
EXPECTED = {
    # Anyone: signing in, first-run setup, health, the metrics scrape (it has its own token),
    # mcpadmin's OAuth client metadata, an invite link, single sign-on.
    "auth.login": {"get": PUBLIC, "post": PUBLIC},
    "auth.setup": {"get": PUBLIC, "post": PUBLIC},
    "health.healthz": {"get": PUBLIC},
    "metrics.scrape": {"get": PUBLIC},
    "oauth.client_metadata": {"get": PUBLIC},
    "people.join": {"get": PUBLIC, "post": PUBLIC},
    "sso.start": {"post": PUBLIC},
    "sso.callback": {"get": PUBLIC},
    # Anyone signed in.
    "index": {"get": SIGNED_IN},
    "auth.logout": {"post": SIGNED_IN},
    "auth.logout_everywhere": {"post": SIGNED_IN},
    "oauth.callback": {"get": SIGNED_IN},
    # Owners, operators and auditors read; owners and operators change.
    "connectors.index": {"get": READ},
    "connectors.show": {"get": READ},
    "connectors.create": {"get": OPERATE, "post": OPERATE},
    "connectors.update": {"get": OPERATE, "post": OPERATE},
    "connectors.fields": {"get": OPERATE},
    "connectors.delete": {"get": OPERATE, "post": OPERATE},
    "connectors.save_secret": {"post": OPERATE},
    "connectors.sync": {"post": OPERATE},
    "connectors.sync_selected": {"post": OPERATE},
    "oauth.disconnect": {"post": OPERATE},  # the shared connection only
    "tools.show": {"get": READ},
    "tools.prompt": {"get": READ},
    "records.calls": {"get": READ},
    "records.audit": {"get": READ},
    "records.export_calls": {"get": READ},
    "records.export_audit": {"get": READ},
    "records.connector_usage": {"get": READ},
    "attention.index": {"get": READ},
    "attention.webhooks_page": {"get": READ},
    "attention.create_webhook": {"post": OPERATE},
    "attention.test_webhook": {"post": OPERATE},
    "attention.delete_webhook": {"get": OPERATE, "post": OPERATE},
    "agents.reviewed": {"post": OPERATE},
    "agents.prompt_reviewed": {"post": OPERATE},
    # Agents: everyone reads, members only their own; owners, operators and an agent's own
    # member change it (a member only with connectors available to members).
    "agents.index": {"get": AGENT_READ},
    "agents.update": {"get": AGENT_READ, "post": AGENT_CHANGE},
    "agents.seen": {"get": AGENT_READ},
    "records.agent_usage": {"get": AGENT_READ},
    "agents.create": {"get": AGENT_CHANGE, "post": AGENT_CHANGE},
    "agents.delete": {"get": AGENT_CHANGE, "post": AGENT_CHANGE},
    "agents.delete_selected": {"get": AGENT_CHANGE, "post": AGENT_CHANGE},
    "agents.save_secret": {"post": AGENT_CHANGE},
    "agents.choose_tools": {"post": AGENT_CHANGE},
    "agents.choose_prompts": {"post": AGENT_CHANGE},
    "agents.choose_resources": {"post": AGENT_CHANGE},
    "agents.sync": {"post": AGENT_CHANGE},
    "agents.disconnect": {"post": AGENT_CHANGE},
    "agents.create_key": {"post": AGENT_CHANGE},
    "agents.revoke_key": {"get": AGENT_CHANGE, "post": AGENT_CHANGE},
    "console.call": {"get": AGENT_CHANGE, "post": AGENT_CHANGE},
    # Connect: an agent's own account (a shared connection needs OPERATE: CONNECT_SHARED).
    "oauth.start": {"post": AGENT_CHANGE},
    # People: owners, operators and auditors read the list; owners change it.
    "people.index": {"get": READ},
    "people.invite": {"post": ADMINISTER},
    "people.revoke_invite": {"post": ADMINISTER},
    "people.change_role": {"post": ADMINISTER},
    "people.deactivate": {"get": ADMINISTER, "post": ADMINISTER},
    "people.reactivate": {"post": ADMINISTER},
    # Settings (single sign-on among them): owners.
    "settings.index": {"get": ADMINISTER, "post": ADMINISTER},
}
# Connect without an agent connects the shared credential: owners and operators only.
CONNECT_SHARED = OPERATE

# Every shell command (by its words): the access it needs with ``--as NAME``, and arguments
# that run it harmlessly. "{agent}" is an agent of the member's, or of member2's (the member
# is then refused: "belongs to someone else"). Add a new command here.
EXPECTED_CLI = {
    ("create-admin",): (ADMINISTER, ["newcomer", "--password-stdin", "--role", "member"]),
    ("set-password",): (ADMINISTER, ["member2", "--password-stdin"]),
    ("rotate-keys",): (ADMINISTER, []),
    ("sync-tools",): (OPERATE, ["No such connector"]),
    ("prune-logs",): (OPERATE, []),
    ("notify",): (OPERATE, []),
    ("agent-key", "create"): (AGENT_CHANGE, ["{agent}", "--label", "shell"]),
    ("agent-key", "list"): (AGENT_READ, ["{agent}"]),
    ("agent-key", "revoke"): (AGENT_CHANGE, ["{agent}", "999999"]),
    ("people", "list"): (READ, []),
    ("people", "invite"): (ADMINISTER, ["--role", "member"]),
    ("people", "set-role"): (ADMINISTER, ["member2", "member"]),
    ("people", "deactivate"): (ADMINISTER, ["nobody"]),
    ("people", "reactivate"): (ADMINISTER, ["member2"]),
}
# Flask's own commands and Flask-Migrate's act on the process or the schema with the shell's
# rights (the shell holds the database and the keys): they take no ``--as``.
SHELL_ONLY = {"db", "routes", "run", "shell"}

ROLES = [Role.OWNER, Role.OPERATOR, Role.AUDITOR, Role.MEMBER]
# Asked last, in this order: they delete what later requests would use, or end the session.
LAST = (
    "agents.revoke_key",
    "agents.delete_selected",
    "agents.delete",
    "connectors.delete",
    "attention.delete_webhook",
    "people.deactivate",
)
ENDS_SESSION = ("auth.logout", "auth.logout_everywhere")


def kind(method: str) -> str:
    return "get" if method in roles.READ_METHODS else "post"


# What each route's ``id`` names, by endpoint or by blueprint.
ID_KINDS = {
    "agents": "agent",
    "console": "agent",
    "records.agent_usage": "agent",
    "connectors": "connector",
    "records.connector_usage": "connector",
    "attention": "webhook",
    "people": "person",
}


def id_kind(endpoint: str) -> str | None:
    return ID_KINDS.get(endpoint) or ID_KINDS.get(endpoint.partition(".")[0])


@dataclass
class Case:
    """One request: whose agent it touches and which connector it uses with that agent (what
    a member's reach depends on), and the access it needs."""

    endpoint: str
    method: str
    url: str
    needs: Access
    data: dict = field(default_factory=dict)
    whose: str | None = None  # "own", "other" or "unowned": whose agent
    connector: int | None = None

    def __str__(self):
        return f"{self.method} {self.url} ({self.endpoint})"


def cases_of(rule, method, world) -> list[Case]:
    """The requests asking ``rule`` with ``method``: once per kind of agent where it names an
    agent, with the connector available to members and the one that is not."""
    endpoint, args = rule.endpoint, rule.arguments
    needs = EXPECTED[endpoint][kind(method)]
    fixed = {
        "fmt": "csv",
        "token": "not-a-token",
        "filename": "app.css",
        "tool_id": world.tool,
        "item_id": world.prompt,
        "connector_id": world.shared,
    }
    by_kind = {"connector": world.shared, "webhook": world.webhook, "person": world.person}

    def case(whose=None, connector=None, data=None, needs=needs, **values):
        values = {**{a: fixed[a] for a in args if a in fixed}, **values}
        if "id" in args and "id" not in values:
            values["id"] = by_kind[id_kind(endpoint)]
        return Case(
            endpoint, method, url_for(endpoint, **values), needs, data or {}, whose, connector
        )

    if endpoint == "oauth.start":
        return [
            case(connector_id=world.shared, needs=CONNECT_SHARED),
            *(
                case(
                    whose,
                    world.per_agent,
                    {"agent_id": world.agents[whose]},
                    connector_id=world.per_agent,
                )
                for whose in WHOSE
            ),
        ]
    if endpoint.startswith("tools."):  # also as the review for an agent it changed for
        return [case(), case(agent=world.agents["unowned"])]
    if id_kind(endpoint) != "agent" or "id" not in args:
        return [case()]
    if "key_id" in args:
        return [case(w, id=world.agents[w], key_id=world.keys[w]) for w in WHOSE]
    if "connector_id" in args:
        pairs = [
            ("own", world.per_agent),
            ("own", world.shared),
            ("other", world.per_agent),
            ("unowned", world.shared),
        ]
        return [case(w, c, id=world.agents[w], connector_id=c) for w, c in pairs]
    return [case(w, id=world.agents[w]) for w in WHOSE]


def all_cases(app, world) -> list[Case]:
    """Every route and method of the app, GETs first, then the posts that change nothing later
    requests need, then ``LAST``, then signing out."""
    order = {endpoint: i for i, endpoint in enumerate((*LAST, *ENDS_SESSION), start=1)}
    found = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static" or rule.endpoint not in EXPECTED:
                continue  # test_every_route_has_the_rule_of_the_matrix fails for it
            for method in sorted(rule.methods & {"GET", "POST"}):
                found += cases_of(rule, method, world)
    return sorted(found, key=lambda c: (c.method == "POST", order.get(c.endpoint, 0)))


# Who may ---------------------------------------------------------------------------------


def allowed(role: str, needs: Access, whose: str | None, connector: int | None, world) -> bool:
    """Whether ``role`` may make a request needing ``needs`` on ``whose`` agent (None: no
    agent) with a connector: the matrix, then a member's reach."""
    if needs is PUBLIC:
        return True
    if role is None or needs not in roles.GRANTS[role]:
        return False
    if role != Role.MEMBER:
        return True
    return whose in (None, "own") and (connector is None or world.available(connector))


def refused_events(app) -> int:
    with app.app_context():
        query = select(func.count()).where(AuditEvent.action == Action.ACCESS_REFUSED)
        return db.session.scalar(query)


def walk(app, sign_in, role, world) -> tuple[list[str], list]:
    """Ask every case as ``role`` (None: signed out). The sentences of what went otherwise
    than expected, and the HTML pages answered."""
    browser = sign_in(role) if role else Browser(app.test_client())
    problems, pages = [], []
    for case in all_cases(app, world):
        if case.endpoint in ENDS_SESSION and role:
            browser = sign_in(role)  # each sign-out with a session of its own
        expect = allowed(role, case.needs, case.whose, case.connector, world)
        before = refused_events(app) if role and not expect else None
        try:  # TESTING lets a view's exception through: report it with the others
            if case.method == "GET":
                response = browser.get(case.url)
            else:
                response = browser.post(case.url, data=case.data)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{case}: raised {exc!r} (a server error)")
            continue
        status = response.status_code
        if expect and role and response.mimetype == "text/html" and not response.location:
            pages.append((case, response.get_data(as_text=True)))
        if expect and role and response.location:
            problems += sent_elsewhere(app, role, world, case, response.location)
        if status >= 500:
            problems.append(f"{case}: {status} (a server error)")
        elif role is None and not expect:
            if status != 302 or not response.location.startswith("/login"):
                problems.append(f"{case}: {status}, not a redirect to the sign-in page")
            elif case.method == "GET" and browser.hx_get(case.url).status_code != 401:
                problems.append(f"{case}: htmx is not answered 401")
        elif not expect:
            if status != 403:
                problems.append(f"{case}: {status} for {role}, who should be refused (403)")
            elif refused_events(app) != before + 1:
                problems.append(f"{case}: refused to {role} with no access.refused audit event")
        elif status in (401, 403):
            problems.append(f"{case}: {status} for {role}, who may do this")
    return problems, pages


@pytest.mark.parametrize("role", [*ROLES, None], ids=[*ROLES, "signed out"])
def test_each_role_is_refused_and_offered_exactly_what_the_matrix_says(app, sign_in, role):
    """Every route asked as ``role``; then every page it got checked for what it offers."""
    world = build_world(app)
    problems, pages = walk(app, sign_in, role, world)
    if role is not None:  # signed out, every page leads to the sign-in page
        problems += sorted(
            {p for case, page in pages for p in offered_problems(app, role, world, case, page)}
        )
    assert not problems, "\n".join(problems)


# Absent from the page ----------------------------------------------------------------------


class Offers(HTMLParser):
    """What a page lets its reader ask: (method, url, form fields) for each link, form
    (with its hidden fields), button ``formaction`` and htmx request."""

    def __init__(self):
        super().__init__()
        self.found, self.form = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            method = (attrs.get("method") or "get").upper()
            self.form = {"method": method, "urls": [], "fields": {}}
            if "action" in attrs:
                self.form["urls"].append((method, attrs["action"]))
        elif tag == "input" and self.form is not None and attrs.get("type") == "hidden":
            self.form["fields"][attrs.get("name")] = attrs.get("value")
        elif tag == "a" and attrs.get("href"):
            self.found.append(("GET", attrs["href"], {}))
        if "formaction" in attrs and self.form is not None:
            method = (attrs.get("formmethod") or self.form["method"]).upper()
            self.form["urls"].append((method, attrs["formaction"]))
        for name in ("hx-get", "hx-post", "hx-delete", "hx-put", "hx-patch"):
            if not attrs.get(name):
                continue
            if self.form is not None:  # sent with the form's fields
                self.form["urls"].append((name[3:].upper(), attrs[name]))
            else:
                self.found.append((name[3:].upper(), attrs[name], {}))

    def handle_endtag(self, tag):
        if tag == "form" and self.form is not None:
            self.found += [(m, url, self.form["fields"]) for m, url in self.form["urls"]]
            self.form = None


def offered_problems(app, role, world, case, page) -> list[str]:
    """What ``page`` (the answer to ``case``) offers ``role`` that ``role`` may not do."""
    parser = Offers()
    parser.feed(page)
    adapter = app.url_map.bind("localhost")
    problems = []
    for method, url, fields in parser.found:
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path.startswith("/"):
            continue  # another site, or an anchor on this page
        try:
            endpoint, values = adapter.match(parts.path, method)
        except (NotFound, MethodNotAllowed):
            problems.append(f"{case} offers {method} {url}, which no route answers")
            continue
        if endpoint == "static":
            continue
        needs = EXPECTED[endpoint][kind(method)]
        agent_id = values.get("id") if id_kind(endpoint) == "agent" else None
        agent_id = (
            agent_id
            or _int(fields.get("agent_id"))
            or _int(parse_qs(parts.query).get("agent", [None])[0])
        )
        if endpoint == "oauth.start" and not fields.get("agent_id"):
            needs = CONNECT_SHARED
        whose = world.whose(agent_id)
        uses = endpoint.startswith("agents.") or endpoint == "oauth.start"
        connector = values.get("connector_id") if uses else None
        if not allowed(role, needs, whose, connector, world):
            problems.append(f"{case} offers {role} {method} {url} ({endpoint}, needs {needs})")
    return problems


def sent_elsewhere(app, role, world, case, location) -> list[str]:
    """A redirect of this app's to a page ``role`` may not open."""
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost"):
        return []  # the OAuth provider, say
    endpoint, values = app.url_map.bind("localhost").match(parts.path, "GET")
    whose = world.whose(values.get("id")) if id_kind(endpoint) == "agent" else None
    if allowed(role, EXPECTED[endpoint]["get"], whose, None, world):
        return []
    return [f"{case} sends {role} to {location} ({endpoint}), which {role} may not open"]


def _int(text):
    return int(text) if text and text.isdigit() else None


# The rules themselves ------------------------------------------------------------------------


def test_every_route_has_the_rule_of_the_matrix(app):
    problems = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            if rule.endpoint not in EXPECTED:
                problems.append(
                    f"{rule.endpoint} ({rule.rule}) is not in EXPECTED: add it there "
                    "with the access the issue's matrix gives it"
                )
                continue
            for method in sorted(rule.methods - {"OPTIONS"}):  # Flask answers OPTIONS itself
                got = roles.required(rule.endpoint, method)
                want = EXPECTED[rule.endpoint].get(kind(method))
                if got is None:
                    problems.append(
                        f"{method} {rule.rule} has no access rule: mark the view with @allow(...)"
                    )
                elif got != want:
                    problems.append(
                        f"{method} {rule.rule} ({rule.endpoint}) needs {got!r}; "
                        f"EXPECTED says {want!r}"
                    )
    assert not problems, "\n".join(problems)


def shell_commands(group, words=()):
    """(words, command) for every command under ``group``, but ``SHELL_ONLY``."""
    for name, command in group.commands.items():
        if not words and name in SHELL_ONLY:
            continue
        if isinstance(command, click.Group):
            yield from shell_commands(command, (*words, name))
        else:
            yield (*words, name), command


def test_every_shell_command_has_the_rule_of_the_matrix(app):
    problems = []
    for words, command in shell_commands(app.cli):
        got = getattr(command.callback, "access", None)
        want = EXPECTED_CLI.get(words, (None,))[0]
        if want is None:
            problems.append(
                f"flask {' '.join(words)} is not in EXPECTED_CLI: add it with the "
                "access the matrix gives it, or to SHELL_ONLY"
            )
        elif got != want:
            problems.append(
                f"flask {' '.join(words)} needs {got!r}; EXPECTED_CLI says {want!r} "
                "(roles.cli_rule gives it --as)"
            )
    assert not problems, "\n".join(problems)


def test_each_role_runs_exactly_the_shell_commands_the_matrix_allows(app, people):
    world = build_world(app)
    runner = app.test_cli_runner()
    present = dict(shell_commands(app.cli))
    problems = []
    for role in ROLES:
        for words, (needs, arguments) in EXPECTED_CLI.items():
            if words not in present:
                continue  # not merged yet
            targets = ("own", "other") if "{agent}" in arguments else (None,)
            for whose in targets:
                args = [a.replace("{agent}", world.names.get(whose, "")) for a in arguments]
                result = runner.invoke(args=[*words, "--as", role, *args], input=f"{PASSWORD}\n")
                said = result.output
                may = allowed(role, needs, whose, None, world)
                refused = result.exit_code != 0 and (
                    "may not run this command" in said or "belongs to someone else" in said
                )
                shown = f"flask {' '.join([*words, '--as', role, *args])}"
                if may and (refused or not isinstance(result.exception, (type(None), SystemExit))):
                    problems.append(f"{shown}: refused or failed: {said.strip()[-200:]}")
                elif not may and not refused:
                    problems.append(
                        f"{shown}: not refused ({result.exit_code}): {said.strip()[-200:]}"
                    )
    assert not problems, "\n".join(problems)
