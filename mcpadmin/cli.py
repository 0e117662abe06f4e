"""Shell commands: ``flask create-admin``, ``flask set-password``, ``flask rotate-keys``,
``flask sync-tools``, ``flask prune-logs``, ``flask agent-key``, ``flask notify`` and
``flask people``. Thin
wrappers over services; what changes is recorded in the audit trail as the shell's doing."""

import sys

import click
from flask import current_app, g
from flask.cli import with_appcontext
from sqlalchemy import func, select

from .auth import discard_setup_token
from .extensions import db
from .filters import isotime, plural
from .models import Agent, Role
from .roles import Access, cli_agent_in_reach, cli_rule
from .services import admins, agent_keys, audit, fanout, keys, people, retention, webhooks
from .services.audit import Action


def _password(from_stdin: bool, prompt: str) -> str:
    """One line of standard input, or a hidden prompt asked twice."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


@click.command("create-admin")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--role", type=click.Choice(Role.ALL), default=Role.OWNER, show_default=True,
              help="What the person may do.")  # fmt: skip
@with_appcontext
@cli_rule(Access.ADMINISTER)
def create_admin_command(username, password_stdin, role):
    """Create a person with a local password (from a prompt, or stdin), an owner unless
    ``--role`` says otherwise; the setup link stops working."""
    password = _password(password_stdin, "Password")
    try:
        admin = admins.create_admin(username, password, role)
    except admins.AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record(Action.ADMIN_CREATED, admin, {"via": "flask create-admin"})
    db.session.commit()
    discard_setup_token(current_app.instance_path)
    click.echo(f"{Role.LABELS[admin.role]} {admin.username} created.")


@click.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
@cli_rule(Access.ADMINISTER)
def set_password_command(username, password_stdin):
    """Give an admin a new password (from a prompt, or stdin); signs it out everywhere."""
    password = _password(password_stdin, "New password")
    try:
        admin = admins.set_password(username, password)
    except admins.AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    audit.record(Action.PASSWORD_CHANGED, admin, {"via": "flask set-password"})
    db.session.commit()
    click.echo(f"Password of {admin.username} changed; its sessions are signed out.")


@click.command("rotate-keys")
@with_appcontext
@cli_rule(Access.ADMINISTER)
def rotate_keys_command():
    """Re-encrypt every stored secret under the first key of MCPADMIN_ENCRYPTION_KEYS."""
    result = keys.rotate_all()
    audit.record(Action.KEYS_ROTATED, None,
                 {"rotated": result.rotated, "unreadable": result.unreadable})  # fmt: skip
    db.session.commit()
    click.echo(f"Re-encrypted {plural(result.rotated, 'secret')} under the first key.")
    if result.unreadable:
        click.echo(
            f"{plural(result.unreadable, 'secret')} could not be decrypted with any configured "
            "key and were left as they are; re-enter those credentials in the app.",
            err=True,
        )
        sys.exit(1)


@click.command("sync-tools")
@click.argument("name", required=False)
@click.option("--agent", "agent_name", help="Only this agent's connections.")
@click.option("--stale", is_flag=True, help="Skip listings still fresh by the server's ttlMs.")
@click.option("--workers", default=16, show_default=True, help="Connectors synced at once.")
@with_appcontext
@cli_rule(Access.OPERATE)
def sync_tools_command(name, agent_name, stale, workers):
    """Fetch the tool list of every connector (or NAME), then prune the logs as ``flask
    prune-logs`` does; exit 1 if any sync failed.

    Prints one line per sync, sorted by connector (then agent) name, the totals, and what the
    pruning deleted."""
    try:
        pairs = fanout.plan(name, agent_name)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    if not pairs:
        click.echo("Nothing to sync.")
        _prune()
        return

    outcomes = fanout.sync_many(pairs, workers=workers, stale_only=stale)
    for outcome in sorted(outcomes, key=_by_name):
        mark = "skip" if outcome.skipped else ("ok" if outcome.ok else "FAILED")
        mark = "wait" if outcome.waiting else mark
        click.echo(f"{mark:>6}  {outcome.label}: {outcome.message}")
    failed = sum(not o.ok for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    waiting = sum(o.waiting for o in outcomes)
    synced = len(outcomes) - failed - skipped - waiting
    waits = f"{waiting} waiting for an agent, " if waiting else ""
    click.echo(f"{synced} synced, {skipped} skipped (fresh), {waits}{failed} failed.")
    _prune()
    if failed:
        sys.exit(1)


@click.command("prune-logs")
@with_appcontext
@cli_rule(Access.OPERATE)
def prune_logs_command():
    """Delete call log rows older than MCPADMIN_CALL_LOG_DAYS and audit events older than
    MCPADMIN_AUDIT_LOG_DAYS, in small batches; print how many went."""
    _prune()


def _prune():
    pruned = retention.prune()
    click.echo(
        f"Pruned logs: {plural(pruned.calls, 'call')} older than "
        f"{plural(pruned.call_days, 'day')}, {plural(pruned.audit_events, 'audit event')} "
        f"older than {plural(pruned.audit_days, 'day')}"
        + (f", {plural(pruned.sessions, 'idle agent session')}." if pruned.sessions else ".")
    )


@click.command("notify")
@with_appcontext
@cli_rule(Access.OPERATE)
def notify_command():
    """Send new Needs attention items to the webhooks, and the deliveries due for a retry
    (for cron; each server process also does it every MCPADMIN_NOTIFY_INTERVAL seconds)."""
    summary = webhooks.notify()
    click.echo(f"{summary.enqueued} new, {summary.delivered} delivered, "
               f"{summary.failed} failed (to be retried or given up).")  # fmt: skip
    if summary.failed:
        sys.exit(1)


def _by_name(outcome):
    """Connector name, then agent name, ignoring case (exact spelling breaks ties)."""
    names = (outcome.connector, outcome.agent or "")
    return tuple(n.casefold() for n in names), names


@click.group("agent-key")
def agent_key_group():
    """Create, list and revoke the keys an agent's MCP clients present."""


@agent_key_group.command("create")
@click.argument("agent_name", metavar="AGENT")
@click.option("--label", required=True, help="Where the key is used (up to 100 characters).")
@click.option("--expires-days", type=click.IntRange(min=1), help="Days until it expires.")
@with_appcontext
@cli_rule(Access.AGENT_CHANGE)
def create_agent_key_command(agent_name, label, expires_days):
    """Create a key for AGENT and print it, this once: it is not stored and not shown again."""
    agent = _agent(agent_name)
    label = label.strip()
    if not label or len(label) > 100:
        raise click.ClickException("The label needs 1 to 100 characters.")
    row, key = agent_keys.create(agent, label, agent_keys.expiry(expires_days))
    db.session.flush()  # the key's id, for its audit event
    audit.record(Action.KEY_CREATED, agent, agent_keys.described(row))
    db.session.commit()
    expires = isotime(row.expires_at) if row.expires_at else "never"
    click.echo(f"Key {row.id} ({label}) created for {agent.name}; expires: {expires}.", err=True)
    click.echo("Copy it now: it is not shown again.", err=True)
    click.echo(key)


@agent_key_group.command("list")
@click.argument("agent_name", metavar="AGENT")
@with_appcontext
@cli_rule(Access.AGENT_READ)
def list_agent_keys_command(agent_name):
    """List AGENT's keys, newest first: id, label, shown form, created, last used, expiry,
    status. Never the keys themselves."""
    agent = _agent(agent_name)
    rows = agent_keys.newest_first(agent)
    if not rows:
        click.echo(f"{agent.name} has no keys.")
        return
    click.echo("\t".join(("ID", "LABEL", "KEY", "CREATED", "LAST USED", "EXPIRES", "STATUS")))
    for row in rows:
        cells = (
            str(row.id),
            row.label,
            agent_keys.display(row),
            isotime(row.created_at),
            isotime(row.last_used_at) or "never",
            isotime(row.expires_at) or "never",
            agent_keys.status(row),
        )
        click.echo("\t".join(cells))


@agent_key_group.command("revoke")
@click.argument("agent_name", metavar="AGENT")
@click.argument("reference", metavar="KEY_ID_OR_LOOKUP")
@with_appcontext
@cli_rule(Access.AGENT_CHANGE)
def revoke_agent_key_command(agent_name, reference):
    """Revoke one of AGENT's keys (by id, or by the lookup part ``list`` shows): its clients
    are refused at once; the key stays listed."""
    agent = _agent(agent_name)
    try:
        row = agent_keys.find(agent, reference)
    except agent_keys.AgentKeyError as exc:
        raise click.ClickException(str(exc)) from exc
    already = row.revoked_at is not None
    if not already:
        audit.record(Action.KEY_REVOKED, agent, agent_keys.described(row))
    agent_keys.revoke(row)
    db.session.commit()
    state = "was already revoked" if already else "revoked"
    click.echo(f"Key {row.id} ({row.label}) of {agent.name} {state}.")


def _agent(name: str) -> Agent:
    """:raise click.ClickException: no agent has this name (compared ignoring case), or it is
    someone else's and the command runs ``--as`` a member."""
    agent = db.session.scalar(select(Agent).where(func.lower(Agent.name) == name.strip().lower()))
    if agent is None:
        raise click.ClickException(f"No agent named {name!r}.")
    cli_agent_in_reach(agent)
    return agent


@click.group("people")
def people_group():
    """List people, invite someone, change a role, deactivate or reactivate a person."""


@people_group.command("list")
@with_appcontext
@cli_rule(Access.READ)
def list_people_command():
    """Everyone (name, email, role, how they sign in, last sign-in, status, agents owned),
    then the pending invites (never their links)."""
    counts = people.agent_counts()
    click.echo("\t".join(("NAME", "EMAIL", "ROLE", "SIGNS IN WITH", "LAST SIGN-IN", "STATUS",
                          "AGENTS")))  # fmt: skip
    for person in people.everyone():
        cells = (
            person.username,
            person.email or "-",
            person.role,
            people.sign_in_kind(person),
            isotime(person.last_signed_in_at) or "never",
            "active" if person.active else "deactivated",
            str(counts.get(person.id, 0)),
        )
        click.echo("\t".join(cells))
    invites = people.pending_invites()
    click.echo(f"\n{plural(len(invites), 'pending invite')}.")
    for row in invites:
        whom = row.email or "anyone with the link"
        click.echo(f"  {row.role} for {whom}, expires {isotime(row.expires_at)}, "
                   f"created by {row.created_by or 'shell'}")  # fmt: skip


@people_group.command("invite")
@click.option("--role", type=click.Choice(Role.ALL), required=True, help="The role they join with.")
@click.option("--email", help="Who it is for (shown on the People page).")
@click.option("--days", type=int, default=people.DEFAULT_INVITE_DAYS, show_default=True,
              help=f"Days the link works (1 to {people.MAX_INVITE_DAYS}).")  # fmt: skip
@with_appcontext
@cli_rule(Access.ADMINISTER)
def invite_command(role, email, days):
    """Create an invite and print its link, this once: it is not stored and not shown again."""
    try:
        row, token = people.invite(role, email, days, _actor_name())
    except people.PeopleError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.flush()
    audit.record(Action.PERSON_INVITED, None, people.described(row))
    db.session.commit()
    click.echo(f"Invite for {Role.LABELS[role].lower()} created; it works once, until "
               f"{isotime(row.expires_at)}. Send this link:", err=True)  # fmt: skip
    click.echo(people.link(token))


@people_group.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(Role.ALL))
@with_appcontext
@cli_rule(Access.ADMINISTER)
def set_role_command(name, role):
    """Give NAME another role (the last active owner stays an owner)."""
    try:
        person = people.find_person(name)
        before = person.role
        people.change_role(person, role)
    except people.PeopleError as exc:
        raise click.ClickException(str(exc)) from exc
    if person.role == before:
        click.echo(f"{person.username} already is {before}.")
        return
    audit.record(Action.ROLE_CHANGED, person, {"role": [before, person.role]})
    db.session.commit()
    click.echo(f"{person.username} is now {person.role} (was {before}).")


@people_group.command("deactivate")
@click.argument("name")
@with_appcontext
@cli_rule(Access.ADMINISTER)
def deactivate_command(name):
    """Deactivate NAME: signed out everywhere now, and their agents' keys are refused until
    they are reactivated (the agents and keys stay)."""
    try:
        person = people.find_person(name)
        was_active = person.active
        people.deactivate(person, g.get("admin"))
    except people.PeopleError as exc:
        raise click.ClickException(str(exc)) from exc
    if not was_active:
        click.echo(f"{person.username} was already deactivated.")
        return
    audit.record(Action.PERSON_DEACTIVATED, person)
    db.session.commit()
    click.echo(f"{person.username} deactivated: signed out everywhere; their agents' keys are "
               "refused until they are reactivated.")  # fmt: skip


@people_group.command("reactivate")
@click.argument("name")
@with_appcontext
@cli_rule(Access.ADMINISTER)
def reactivate_command(name):
    """Let NAME sign in again; their agents' keys work again."""
    try:
        person = people.find_person(name)
    except people.PeopleError as exc:
        raise click.ClickException(str(exc)) from exc
    if person.active:
        click.echo(f"{person.username} is active already.")
        return
    people.reactivate(person)
    audit.record(Action.PERSON_REACTIVATED, person)
    db.session.commit()
    click.echo(f"{person.username} is active again.")


def _actor_name() -> str:
    """Who runs the command: the ``--as`` person, else the shell."""
    person = g.get("admin")
    return person.username if person is not None else audit.SHELL


def init_app(app):
    app.cli.add_command(create_admin_command)
    app.cli.add_command(set_password_command)
    app.cli.add_command(rotate_keys_command)
    app.cli.add_command(sync_tools_command)
    app.cli.add_command(prune_logs_command)
    app.cli.add_command(agent_key_group)
    app.cli.add_command(notify_command)
    app.cli.add_command(people_group)
