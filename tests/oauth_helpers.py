"""Driving Connect the way a browser does: the app's redirect to the real peer, the peer's
auto-approving consent, and back to the app's callback."""

from urllib.parse import parse_qs, urlsplit

import requests

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import Agent, Connector


def add_connector(app, url, mode="shared", name="Peer", client_id=None, **fields) -> int:
    """An OAuth connector; ``client_id`` as if the operator entered a pre-registered one."""
    with app.app_context():
        connector = Connector(name=name, url=url, auth_type="oauth", credential_mode=mode, **fields)
        if client_id:
            connector.oauth_client_id_enc = seal(client_id)
        db.session.add(connector)
        db.session.commit()
        return connector.id


def add_agent(app, name="Ada") -> int:
    with app.app_context():
        agent = Agent(name=name)
        db.session.add(agent)
        db.session.commit()
        return agent.id


def start(client, connector_id, agent_id=None):
    """Click Connect; return the app's response (a redirect to the provider, or back)."""
    data = {"agent_id": agent_id} if agent_id else {}
    return client.post(f"/oauth/connect/{connector_id}", data=data)


def consent(authorize_url) -> str:
    """Visit the provider's authorize URL; return the app-relative callback path it sends
    the browser to."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert back.path == "/oauth/callback"
    return f"{back.path}?{back.query}"


def connect(client, connector_id, agent_id=None):
    """The whole round trip; return the callback's response."""
    started = start(client, connector_id, agent_id)
    assert started.status_code == 302, started.data
    return client.get(consent(started.headers["Location"]))


def query(url) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
