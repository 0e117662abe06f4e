"""Who may do what: every route and every state-changing shell command names the access it
needs, and the login guard checks it before the view runs.

An access is a kind of request, not a role; each role is granted a set of them (``GRANTS``):

- ``PUBLIC``: anyone, signed in or not (the sign-in page, health, static files, the metrics
  scrape with its own token).
- ``SIGNED_IN``: anyone signed in (sign out, the home page).
- ``READ``: every page that only reads: connectors, tools, Calls, Audit, exports, usage,
  Needs attention. Owners, operators and auditors.
- ``OPERATE``: changing connectors, webhooks, syncs and reviews. Owners and operators.
- ``ADMINISTER``: people, settings and single sign-on. Owners.
- ``AGENT_READ``: reading an agent's pages. Everyone; a member only their own agents.
- ``AGENT_CHANGE``: changing an agent (its tools, its own credentials, its keys). Owners and
  operators for every agent, members for their own (``agent_in_reach``), and a member only
  with connectors an operator made available to members (``connector_in_reach``).

A route declares its access with ``@allow`` (one access for every method, or ``get=`` and
``post=``); a route without one is refused to everyone, and the table-driven test
(``tests/test_authorization.py``) fails. A refusal is a 403 page with a sentence, and an
audit event naming who tried what.
"""

import functools
from enum import StrEnum

import click
from flask import abort, current_app, g, make_response, request

from .errors import render_error
from .extensions import db
from .models import AdminUser, Agent, Connector, Role


class Access(StrEnum):
    PUBLIC = "public"
    SIGNED_IN = "signed in"
    READ = "read"
    OPERATE = "operate"
    ADMINISTER = "administer"
    AGENT_READ = "agent read"
    AGENT_CHANGE = "agent change"


GRANTS = {
    Role.OWNER: frozenset(Access),
    Role.OPERATOR: frozenset({Access.PUBLIC, Access.SIGNED_IN, Access.READ, Access.OPERATE,
                              Access.AGENT_READ, Access.AGENT_CHANGE}),
    Role.AUDITOR: frozenset({Access.PUBLIC, Access.SIGNED_IN, Access.READ, Access.AGENT_READ}),
    Role.MEMBER: frozenset({Access.PUBLIC, Access.SIGNED_IN, Access.AGENT_READ,
                            Access.AGENT_CHANGE}),
}  # fmt: skip
# Roles that reach every agent; the others (members) only their own.
ALL_AGENTS = frozenset({Role.OWNER, Role.OPERATOR, Role.AUDITOR})
# Flask's own endpoint for static files, which no decorator of ours can mark.
BUILT_IN = {"static": Access.PUBLIC}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def allow(access: Access | None = None, *, get: Access | None = None,
          post: Access | None = None):  # fmt: skip
    """Mark a view with the access it needs: ``access`` for every method, or ``get`` for
    reading methods and ``post`` for the others."""
    rule = {"get": get or access, "post": post or access}

    def mark(view):
        view.access = rule
        return view

    return mark


def required(endpoint: str | None, method: str) -> Access | None:
    """The access a request needs, or None when its route names none (refused)."""
    if endpoint in BUILT_IN:
        return BUILT_IN[endpoint]
    view = current_app.view_functions.get(endpoint)
    rule = getattr(view, "access", None)
    if rule is None:
        return None
    return rule["get"] if method in READ_METHODS else rule["post"]


def permits(person: AdminUser | None, access: Access) -> bool:
    if access is Access.PUBLIC:
        return True
    if person is None or not person.active:
        return False
    return access in GRANTS.get(person.role, frozenset())


def can(access: str, agent: Agent | None = None) -> bool:
    """For templates: whether the signed-in person may do ``access`` (to ``agent``)."""
    person = g.get("admin")
    access = Access(access)
    if not permits(person, access):
        return False
    return agent is None or _reaches(person, agent)


def check_request():
    """Refuse the request unless the signed-in person's role grants what its route needs.
    Called by the login guard once the person is known (never for a public route)."""
    access = required(request.endpoint, request.method)
    if access is None:
        current_app.logger.error("no access rule for endpoint %r", request.endpoint)
        return refusal("This address has no access rule, so it is refused to everyone.")
    if not permits(g.admin, access):
        return refusal(_sentence(access))
    return None


def agent_in_reach(agent_id: int) -> Agent:
    """The agent the request names, if the signed-in person reaches it: every agent for
    owners, operators and auditors, their own for a member.

    :raise 404: no such agent. :raise 403: someone else's (audited)."""
    agent = db.get_or_404(Agent, agent_id)
    if not _reaches(g.admin, agent):
        abort(refusal("This agent belongs to someone else, so you cannot open or change it."))
    return agent


def connector_in_reach(connector: Connector):
    """Refuse (403, audited) a member's request that uses a connector not made available to
    members."""
    if g.admin.role == Role.MEMBER and not connector.members_may_use:
        abort(refusal(f"The connector {connector.name} is not available to members. Ask an "
                      "operator to make it available."))  # fmt: skip


def agents_in_reach(query):
    """``query`` (a select of agents) cut to what the signed-in person reaches."""
    if sees_every_agent():
        return query
    return query.where(Agent.owner_id == g.admin.id)


def sees_every_agent(person: AdminUser | None = None) -> bool:
    """Whether ``person`` (default: the signed-in one) reaches every agent: not a member."""
    return (person or g.admin).role in ALL_AGENTS


def _reaches(person, agent: Agent) -> bool:
    return sees_every_agent(person) or agent.owner_id == person.id


def refusal(sentence: str):
    """A 403 page (or, for htmx, a 403 the page shows) saying why, and an audit event."""
    from .services import audit  # audit names the models; roles is imported early

    person = g.get("admin")
    audit.record(
        audit.Action.ACCESS_REFUSED,
        None,
        {"method": request.method, "path": request.path[:200], "reason": sentence},
    )
    db.session.commit()
    if person is not None:
        current_app.logger.warning("refused %s %s to %s (%s)", request.method, request.path,
                                   person.username, person.role)  # fmt: skip
    # A response, not a (body, status) pair: ``abort()`` takes only a response or a code.
    return make_response(render_error(403, "Not allowed", sentence))


def _sentence(access: Access) -> str:
    role = Role.LABELS.get(getattr(g.admin, "role", ""), "Your role")
    needs = {
        Access.READ: "Only owners, operators and auditors can see this page.",
        Access.OPERATE: "Only owners and operators can change this.",
        Access.ADMINISTER: "Only owners can manage people, settings and single sign-on.",
        Access.AGENT_CHANGE: "Only owners, operators and an agent's own member can change it.",
    }
    return (
        f"{needs.get(access, 'This is not allowed for your role.')} You are signed in as "
        f"{g.admin.username} ({role.lower()})."
    )


# The shell ---------------------------------------------------------------------------------


def cli_rule(access: Access):
    """Give a shell command an ``--as NAME`` option: run as that person, with their role's
    access (checked before the command runs, and named in its audit events). Without it the
    command runs as the shell, which holds the encryption keys and may do anything."""

    def wrap(command):
        @click.option(
            "--as",
            "acting_as",
            metavar="NAME",
            help="Run as this person, with their role's rights (audited as them).",
        )
        @functools.wraps(command)
        def run(*args, acting_as=None, **kwargs):
            if acting_as is not None:
                from .services import people  # as in ``refusal``: roles is imported early

                try:
                    person = people.find_person(acting_as)
                except people.PeopleError as exc:
                    raise click.ClickException(str(exc)) from exc
                if not permits(person, access):
                    state = "deactivated" if not person.active else _article(person.role)
                    raise click.ClickException(
                        f"{person.username} is {state} and may not run this command."
                    )
                g.admin = person
            return command(*args, **kwargs)

        run.access = access
        return run

    return wrap


def _article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def cli_agent_in_reach(agent: Agent):
    """Refuse a shell command acting ``--as`` a member on someone else's agent."""
    person = g.get("admin")
    if person is not None and not _reaches(person, agent):
        raise click.ClickException(f"{agent.name} belongs to someone else; "
                                   f"{person.username} may not use it.")  # fmt: skip
