"""Real MCP clients use everything a server offers beyond tools through an agent's endpoint:
the 2.x Python client (``auto``, so 2026-07-28, and ``legacy``), the 1.30.0 Python client and
the TypeScript SDK client each list resources and templates, read a text resource and one of
a template, list prompts and get one with arguments, complete a prompt's and a template's
argument, and answer the elicitation a tool asks for (2025: a request on the call's stream;
2026: an ``input_required`` round), against ``tests/peers/conformance_server.py``.

Every step runs twice: straight at the peer (which proves the clients and the peer), and
through the gateway, for an agent with every tool and prompt and all resources of the peer
ticked, names prefixed (prompts ``<slug>__<name>``; URIs and templates as the peer's own).
"""

import pytest

from mcpadmin import create_app
from mcpadmin.crypto import seal
from mcpadmin.models import Connector
from tests import clients
from tests.conftest import empty_database
from tests.peers import start

pytestmark = [
    pytest.mark.skipif(clients.missing() is not None, reason=str(clients.missing())),
]

CLIENTS = ["py2-auto", "py2-legacy", "py1", "ts"]
TARGETS = ["peer", "gateway"]
PROMPT = "test_prompt_with_arguments"
TEMPLATE = "test://template/{id}/data"
ANSWER = {"action": "accept", "content": {"username": "ada", "email": "ada@example.com"}}


def run(client: str, url: str, key: str, steps: list[dict]) -> list[dict]:
    if client == "ts":
        return clients.run_ts(url, key, steps)
    if client == "py1":
        return clients.run_py1(url, key, steps)
    return clients.run_py2(url, key, steps, mode=client.removeprefix("py2-"))


@pytest.fixture(scope="module")
def endpoints(database_uri, tmp_path_factory):
    """``{target: (URL, key, prefix)}``: the bearer-protected peer itself (no prefix), and an
    agent's endpoint in front of it (``<slug>__`` before tool and prompt names)."""
    peer = start("conformance_server.py", "--bearer", "peer-token")
    app = create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_uri,
            "ALLOW_PRIVATE_NETWORKS": True,
            "ALLOW_HTTP_LOOPBACK": True,
        },
        instance_path=str(tmp_path_factory.mktemp("instance")),
    )
    try:
        with app.app_context():
            connector = Connector(
                name="Test Surface",
                url=peer.base_url + "/mcp",
                auth_type="bearer",
                status="connected",
                secret_enc=seal("peer-token"),
            )
            agent_id, key, _ = clients.seed_agent([connector], all_prompts=True, all_resources=True)
            prefix = f"{connector.slug}__"
        with clients.serve_gateway(app.instance_path, database_uri) as base:
            yield {
                "peer": (peer.base_url + "/mcp", "peer-token", ""),
                "gateway": (f"{base}/agents/{agent_id}/mcp", key, prefix),
            }
    finally:
        empty_database(app)
        peer.stop()


def steps(prefix: str) -> dict:
    return {
        "resources": {"op": "resources"},
        "read text": {"op": "read", "uri": "test://static-text"},
        "read template": {"op": "read", "uri": "test://template/42/data"},
        "prompts": {"op": "prompts"},
        "prompt": {
            "op": "prompt",
            "name": prefix + PROMPT,
            "arguments": {"arg1": "a1", "arg2": "b2"},
        },
        "complete prompt": {
            "op": "complete",
            "ref": {"type": "ref/prompt", "name": prefix + PROMPT},
            "argument": {"name": "arg1", "value": "pa"},
        },
        "complete template": {
            "op": "complete",
            "ref": {"type": "ref/resource", "uri": TEMPLATE},
            "argument": {"name": "id", "value": "1"},
        },
        "elicitation": {
            "op": "call",
            "name": prefix + "test_elicitation",
            "arguments": {"message": "Who are you?"},
            "elicit": ANSWER,
        },
    }


@pytest.fixture(scope="module")
def answers(endpoints):
    """What each client answered at each target, each run once: ``{(target, client): {step
    name: answer}}``, plus ``"negotiated"`` for the 2.x client."""
    ran = {}
    for target in TARGETS:
        url, key, prefix = endpoints[target]
        wanted = steps(prefix)
        for client in CLIENTS:
            try:
                answered = run(client, url, key, list(wanted.values()))
            except Exception as error:  # noqa: BLE001 - one client's failed connect fails its tests
                answered = [{"error": repr(error)}]
            answered += answered[:1] * (len(wanted) - len(answered))  # a failed connect
            ran[target, client] = dict(zip(wanted, answered, strict=False))
            if client.startswith("py2") and len(answered) > len(wanted):
                ran[target, client]["negotiated"] = answered[-1].get("protocol_version")
    return ran


def answer(answers, target, client, step) -> dict:
    got = answers[target, client][step]
    assert "error" not in got, got
    return got


def text_of(result: dict) -> str:
    return "".join(c.get("text", "") for c in result.get("contents") or result.get("content"))


parametrize = pytest.mark.parametrize(
    ("target", "client"), [(t, c) for t in TARGETS for c in CLIENTS]
)


@parametrize
def test_lists_resources_and_templates(answers, target, client):
    listed = answer(answers, target, client, "resources")
    uris = {r["uri"] for r in listed["resources"]}
    assert {"test://static-text", "test://static-binary"} <= uris
    assert [t["uriTemplate"] for t in listed["templates"]] == [TEMPLATE]


@parametrize
def test_reads_a_text_resource(answers, target, client):
    result = answer(answers, target, client, "read text")["result"]
    assert result["contents"][0]["uri"] == "test://static-text"
    assert text_of(result) == "This is the content of the static text resource."


@parametrize
def test_reads_a_resource_of_a_template(answers, target, client):
    result = answer(answers, target, client, "read template")["result"]
    assert result["contents"][0]["uri"] == "test://template/42/data"
    assert "Data for ID: 42" in text_of(result)


@parametrize
def test_lists_prompts_and_gets_one_with_arguments(answers, endpoints, target, client):
    prefix = endpoints[target][2]
    names = {p["name"] for p in answer(answers, target, client, "prompts")["prompts"]}
    assert prefix + PROMPT in names
    messages = answer(answers, target, client, "prompt")["result"]["messages"]
    assert messages[0]["content"]["text"] == "Prompt with arguments: arg1='a1', arg2='b2'"


@parametrize
def test_completes_a_prompt_argument_and_a_template_argument(answers, target, client):
    prompt = answer(answers, target, client, "complete prompt")["result"]["completion"]
    assert prompt["values"] == ["paris", "park", "party"]
    template = answer(answers, target, client, "complete template")["result"]["completion"]
    assert template["values"] == ["1", "123"]


@parametrize
def test_answers_the_elicitation_a_tool_asks_for(answers, target, client):
    got = answer(answers, target, client, "elicitation")
    assert [e["message"] for e in got["elicited"]] == ["Who are you?"]
    assert set(got["elicited"][0]["requestedSchema"]["properties"]) == {"username", "email"}
    assert '"username": "ada"' in text_of(got["result"])
    assert got["result"].get("isError") is not True


@pytest.mark.parametrize("target", TARGETS)
def test_the_2x_client_speaks_2026_by_default_and_2025_when_forced(answers, target):
    assert answers[target, "py2-auto"].get("negotiated") == "2026-07-28"
    assert answers[target, "py2-legacy"].get("negotiated") == "2025-11-25"
