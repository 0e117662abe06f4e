"""Shell commands: ``flask create-admin``, ``flask set-password``, ``flask rotate-keys`` and
``flask sync-tools``. Thin wrappers over services."""

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from .auth import discard_setup_token
from .extensions import db
from .filters import plural
from .services import admins, fanout, keys


def _password(from_stdin: bool, prompt: str) -> str:
    """One line of standard input, or a hidden prompt asked twice."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=True)


@click.command("create-admin")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create_admin_command(username, password_stdin):
    """Create an admin account (password from a prompt, or stdin); the setup link stops working."""
    password = _password(password_stdin, "Password")
    try:
        admin = admins.create_admin(username, password)
    except admins.AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    discard_setup_token(current_app.instance_path)
    click.echo(f"Admin {admin.username} created.")


@click.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def set_password_command(username, password_stdin):
    """Give an admin a new password (from a prompt, or stdin); signs it out everywhere."""
    password = _password(password_stdin, "New password")
    try:
        admin = admins.set_password(username, password)
    except admins.AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Password of {admin.username} changed; its sessions are signed out.")


@click.command("rotate-keys")
@with_appcontext
def rotate_keys_command():
    """Re-encrypt every stored secret under the first key of ENCRYPTION_KEYS."""
    result = keys.rotate_all()
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
def sync_tools_command(name, agent_name, stale, workers):
    """Fetch the tool list of every connector (or NAME); exit 1 if any sync failed.

    Prints one line per sync, sorted by connector (then agent) name, and the totals last."""
    try:
        pairs = fanout.plan(name, agent_name)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    if not pairs:
        click.echo("Nothing to sync.")
        return

    outcomes = fanout.sync_many(pairs, workers=workers, stale_only=stale)
    for outcome in sorted(outcomes, key=_by_name):
        mark = "skip" if outcome.skipped else ("ok" if outcome.ok else "FAILED")
        click.echo(f"{mark:>6}  {outcome.label}: {outcome.message}")
    failed = sum(not o.ok for o in outcomes)
    skipped = sum(o.skipped for o in outcomes)
    synced = len(outcomes) - failed - skipped
    click.echo(f"{synced} synced, {skipped} skipped (fresh), {failed} failed.")
    if failed:
        sys.exit(1)


def _by_name(outcome):
    """Connector name, then agent name, ignoring case (exact spelling breaks ties)."""
    names = (outcome.connector, outcome.agent or "")
    return tuple(n.casefold() for n in names), names


def init_app(app):
    app.cli.add_command(create_admin_command)
    app.cli.add_command(set_password_command)
    app.cli.add_command(rotate_keys_command)
    app.cli.add_command(sync_tools_command)
