"""Flash messages that several blueprints say the same way."""

from flask import flash

from .services import tokens
from .services.fanout import Outcome


def revoke(revocations: list[tokens.Revocation]) -> bool:
    """Run the revocations (once the caller has committed) and flash each one that failed;
    whether they all went through."""
    warnings = tokens.run_revocations(revocations)
    for warning in warnings:
        flash(warning, "error")
    return not warnings


def synced(outcome: Outcome):
    """``Synced Linear: 12 tools.``, why the sync failed, or that it waits for an agent."""
    if outcome.waiting:
        flash(f"{outcome.label}: {outcome.message}", "info")
    elif outcome.ok:
        flash(f"Synced {outcome.label}: {outcome.message}.", "success")
    else:
        flash(f"Sync of {outcome.label} failed: {outcome.message}", "error")


def checked(saved: str, outcome: Outcome):
    """``Token saved for Linear: 12 tools.``, or what the check of a new secret found."""
    if outcome.ok:
        flash(f"{saved}: {outcome.message}.", "success")
    else:
        flash(f"{saved}, but: {outcome.message}", "error")
