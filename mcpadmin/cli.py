"""Shell commands: ``flask create-admin`` and ``flask rotate-keys``. Thin wrappers over services."""

import sys

import click
from flask.cli import with_appcontext

from .extensions import db
from .services import admins, keys


@click.command("create-admin")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create_admin_command(username, password_stdin):
    """Create an admin account (password from a prompt, or stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        admin = admins.create_admin(username, password)
    except admins.AdminError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Admin {admin.username} created.")


@click.command("rotate-keys")
@with_appcontext
def rotate_keys_command():
    """Re-encrypt every stored secret under the first key of ENCRYPTION_KEYS."""
    result = keys.rotate_all()
    db.session.commit()
    click.echo(f"Re-encrypted {result.rotated} secrets under the first key.")
    if result.unreadable:
        click.echo(
            f"{result.unreadable} secrets could not be decrypted with any configured key and "
            "were left as they are; re-enter those credentials in the app.",
            err=True,
        )
        sys.exit(1)


def init_app(app):
    app.cli.add_command(create_admin_command)
    app.cli.add_command(rotate_keys_command)
