"""The lifecycle of a credential as a table: every state × event, and what each combination of
stored state and credential shows the operator and lets them do."""

from datetime import timedelta

import pytest

from mcpadmin.crypto import Sealed, seal
from mcpadmin.models import AgentConnection, Connector, utcnow
from mcpadmin.services.lifecycle import (
    TRANSITIONS,
    Action,
    Event,
    Shown,
    Status,
    apply,
    for_connector,
    moved,
    present,
)

NC, OK, NR, ER = (Status.NOT_CONNECTED, Status.CONNECTED, Status.NEEDS_RECONNECT, Status.ERROR)
EVENTS = [Event.STORED, Event.SYNCED, Event.FAILED, Event.UNAVAILABLE, Event.GRANT_DEAD,
          Event.SCOPE_NEEDED, Event.REFUSED, Event.ISSUER_CHANGED, Event.FORGOTTEN,
          Event.CALL_ANSWERED, Event.CALL_FAILED, Event.NO_AGENT_YET]  # fmt: skip
# Rows: the state before; columns: EVENTS in that order.
EXPECTED = {
    NC: [OK, OK, ER, NC, NR, NR, ER, NC, NC, OK, ER, NC],
    OK: [OK, OK, ER, OK, NR, NR, ER, NR, NC, OK, ER, NC],
    NR: [OK, NR, NR, NR, NR, NR, ER, NR, NC, NR, NR, NC],
    ER: [OK, OK, ER, ER, NR, NR, ER, NR, NC, OK, ER, NC],
}


def test_the_table_covers_every_state_and_event():
    assert set(EVENTS) == set(Event) and set(EXPECTED) == set(Status)
    assert len(TRANSITIONS) == len(Status) * len(Event)


@pytest.mark.parametrize("state", list(Status))
@pytest.mark.parametrize("event", EVENTS)
def test_transition(state, event):
    assert TRANSITIONS[state, event] == EXPECTED[state][EVENTS.index(event)]


@pytest.mark.parametrize("state", list(Status))
@pytest.mark.parametrize("event", EVENTS)
def test_moved_is_what_apply_leaves(state, event):
    place = Connector(status=state, last_error="Before.")
    after = moved((state, "Before."), event, "After.")
    apply(place, event, "After.")
    assert after == (place.status, place.last_error) == (EXPECTED[state][EVENTS.index(event)],
                                                         "After.")  # fmt: skip


def test_an_answered_call_clears_an_error_but_not_a_needs_reconnect():
    assert moved((ER, "Down."), Event.CALL_ANSWERED) == (OK, None)
    assert moved((OK, None), Event.CALL_ANSWERED) == (OK, None)  # unchanged: nothing to write
    assert moved((NR, "Revoked."), Event.CALL_ANSWERED) == (NR, "Revoked.")


def test_a_needs_reconnect_keeps_its_reason_through_a_working_sync():
    place = Connector(status=NR, last_error="Issuer changed: Reconnect.")
    apply(place, Event.SYNCED)
    assert place.status == NR and place.last_error == "Issuer changed: Reconnect."
    apply(place, Event.STORED)
    assert place.status == OK and place.last_error is None


UNREADABLE = Sealed("gAAAA-not-decryptable")
SYNCED = utcnow() - timedelta(minutes=1)


def connector(auth, mode="shared", **fields):
    return Connector(name="C", url="https://mcp.example.com/mcp", auth_type=auth,
                     credential_mode=mode, **fields)  # fmt: skip


def cases():
    """(label, connector, connection or None, shown, actions, words the message must hold);
    built inside an app context (sealing needs the keys)."""
    return [
    ("no auth, never synced", connector("none", status=NC), None, Shown.NOT_SYNCED,
     [Action.SYNC], "has not been contacted"),
    ("no auth, synced", connector("none", status=OK, last_synced_at=SYNCED), None,
     Shown.CONNECTED, [Action.SYNC], None),
    ("bearer, no token", connector("bearer", status=NC), None, Shown.NO_CREDENTIAL,
     [Action.ENTER_SECRET], "No token"),
    ("bearer, token, never synced", connector("bearer", status=OK, secret_enc=seal("t")), None,
     Shown.NOT_SYNCED, [Action.SYNC], "credential is in place"),
    ("bearer, unreadable", connector("bearer", status=OK, secret_enc=UNREADABLE), None,
     Shown.UNREADABLE, [Action.ENTER_SECRET], "re-entered"),
    ("oauth, nothing", connector("oauth", status=NC), None, Shown.NO_CREDENTIAL,
     [Action.CONNECT], None),
    ("oauth, error with a valid token",
     connector("oauth", status=ER, access_token_enc=seal("a"), last_error="Server down."), None,
     Shown.ERROR, [Action.SYNC, Action.DISCONNECT], "Server down"),
    ("oauth, needs reconnect",
     connector("oauth", status=NR, access_token_enc=seal("a"), last_error="Revoked."), None,
     Shown.NEEDS_RECONNECT, [Action.RECONNECT, Action.DISCONNECT], "Revoked"),
    ("oauth, unreadable", connector("oauth", status=OK, access_token_enc=UNREADABLE), None,
     Shown.UNREADABLE, [Action.RECONNECT], "connect again"),
    ("per-agent oauth, agent not connected", connector("oauth", "per_agent"), None,
     Shown.NO_CREDENTIAL, [Action.CONNECT], None),
    ("per-agent bearer, agent's token", connector("bearer", "per_agent"),
     AgentConnection(status=OK, secret_enc=seal("t"), last_synced_at=SYNCED), Shown.CONNECTED,
     [Action.SYNC, Action.DISCONNECT], None),
    ("per-agent bearer, no token", connector("bearer", "per_agent"),
     AgentConnection(status=NC), Shown.NO_CREDENTIAL, [Action.ENTER_SECRET], "No token"),
]  # fmt: skip


LABELS = ["no auth, never synced", "no auth, synced", "bearer, no token",
          "bearer, token, never synced", "bearer, unreadable", "oauth, nothing",
          "oauth, error with a valid token", "oauth, needs reconnect", "oauth, unreadable",
          "per-agent oauth, agent not connected", "per-agent bearer, agent's token",
          "per-agent bearer, no token"]  # fmt: skip


@pytest.mark.parametrize("label", LABELS)
def test_presentation(app, label):
    with app.app_context():
        found = {case[0]: case[1:] for case in cases()}
        assert set(found) == set(LABELS)
        holder, connection, shown, actions, words = found[label]
        p = present(holder, connection)
        assert (p.shown, p.actions) == (shown, actions)
        if words:
            assert words in p.message
        else:
            assert p.message is None or "credential" not in p.message


def test_a_connector_without_authentication_never_claims_a_credential():
    p = for_connector(connector("none", status=NC))
    assert "credential" not in (p.message or "") and p.credential == "not_needed"


def test_a_per_agent_connector_as_a_whole_points_to_the_agents():
    p = for_connector(connector("oauth", "per_agent"))
    assert p.shown == Shown.PER_AGENT and p.actions == [Action.SYNC]
