"""The official MCP conformance suite (``@modelcontextprotocol/conformance``, pinned in
``tests/clients/package-lock.json``) against an agent's endpoint, under gunicorn: the agent has
one connector, ``tests/peers/conformance_server.py`` (the suite's test tools on the ``mcp`` 2.x
SDK, no auth), with its tool names kept as they are, so the scenarios find the tools they call.

Each scenario runs at 2025-11-25 (the ``initialize`` era, through the TypeScript SDK client) and,
where the suite has it there, at 2026-07-28 (stateless, ``server/discover``, per-request
``_meta`` and the ``Mcp-Method`` / ``Mcp-Name`` headers). The suite cannot send a credential,
so ``tests/clients/conformance_auth.mjs`` adds the agent key to every request it makes.

Scenarios for what the gateway declines by design (resources, prompts, completion, sampling,
elicitation) are expected failures, with the reason. The peer alone passes every scenario the
gateway must pass (first test), so a failure through the gateway is the gateway's.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from mcpadmin import create_app
from mcpadmin.models import Connector
from tests import clients
from tests.conftest import empty_database
from tests.peers import start

LEGACY, MODERN = "2025-11-25", "2026-07-28"

# What the gateway must pass, at each version the suite runs the scenario at.
MUST_PASS = [
    ("server-initialize", LEGACY),
    ("server-session-lifecycle", LEGACY),
    ("ping", LEGACY),
    ("logging-set-level", LEGACY),
    ("tools-list", LEGACY),
    ("tools-list", MODERN),
    *[
        (f"tools-call-{kind}", version)
        for kind in ("simple-text", "image", "audio", "embedded-resource", "mixed-content")
        for version in (LEGACY, MODERN)
    ],
    ("tools-call-with-logging", LEGACY),
    ("tools-call-error", LEGACY),
    ("tools-call-error", MODERN),
    ("tools-call-with-progress", LEGACY),
    ("tools-call-with-progress", MODERN),
    ("json-schema-2020-12", LEGACY),
    ("json-schema-2020-12", MODERN),
    ("dns-rebinding-protection", LEGACY),
    ("dns-rebinding-protection", MODERN),
    ("http-header-validation", MODERN),
    ("server-sse-multiple-streams", LEGACY),
    ("server-sse-multiple-streams", MODERN),
    ("server-stateless", MODERN),
    ("caching", MODERN),
]

# Checks of a must-pass scenario that need test tools of a kind the gateway declines; the
# SDK's own server fails them too without those tools.
NOT_APPLICABLE = {
    "server-stateless": {
        "sep-2575-server-rejects-undeclared-capability": "needs the sampling tool "
        "test_missing_capability: the gateway relays no server-to-client requests",
        "sep-2575-missing-capability-http-400": "the same tool",
        "sep-2575-http-server-no-independent-requests-on-stream": "needs the elicitation tool "
        "test_streaming_elicitation",
        "sep-2575-server-no-log-without-loglevel": "needs test_logging_tool, a 2026 logging "
        "fixture the peer does not serve",
        "sep-2575-server-sends-tools-list-changed-on-subscription": "the gateway lists the "
        "stored catalog: a tool list the upstream changes reaches agents at the next sync, "
        "which then sends list_changed (tests/test_gateway_wire.py)",
    },
    "caching": {
        "sep-2549-prompts-list-caching-hints": "no prompts/list: prompts are not served",
        "sep-2549-resources-list-caching-hints": "no resources/list: resources are not served",
        "sep-2549-resources-templates-list-caching-hints": "the same",
    },
}

RESOURCES = "the gateway serves tools only: it advertises no resources capability"
PROMPTS = "the gateway serves tools only: it advertises no prompts capability"
NO_SERVER_REQUESTS = (
    "the gateway relays no server-to-client requests (sampling, elicitation, roots), nor the "
    "2026 input-required rounds that replace them"
)
DECLINED = {
    "completion-complete": "completion serves prompts and resources, which are not served",
    "tools-call-sampling": NO_SERVER_REQUESTS,
    "tools-call-elicitation": NO_SERVER_REQUESTS,
    "elicitation-sep1034-defaults": NO_SERVER_REQUESTS,
    "elicitation-sep1330-enums": NO_SERVER_REQUESTS,
    **{
        f"input-required-result-{s}": NO_SERVER_REQUESTS
        for s in (
            "basic-elicitation",
            "basic-sampling",
            "basic-list-roots",
            "request-state",
            "multiple-input-requests",
            "multi-round",
            "missing-input-response",
            "non-tool-request",
            "result-type",
            "unsupported-methods",
            "tampered-state",
            "capability-check",
            "ignore-extra-params",
            "validate-input",
        )
    },  # fmt: skip
    **{
        f"resources-{s}": RESOURCES
        for s in ("list", "read-text", "read-binary", "templates-read", "subscribe")
    },
    "resources-unsubscribe": RESOURCES,
    "sep-2164-resource-not-found": RESOURCES,
    "prompts-list": PROMPTS,
    **{
        f"prompts-get-{s}": PROMPTS
        for s in ("simple", "with-args", "embedded-resource", "with-image")
    },
    "http-custom-header-server-validation": "needs upstream tools declaring x-mcp-header "
    "parameters; the peer has none (the scenario fails against the SDK's own server too)",
    "server-sse-polling": "no resumable SSE streams (priming event ids, retry): SHOULD-level "
    "warnings only",
}

# Declined scenarios whose checks the gateway passes anyway (it refuses what it does not serve
# the way they expect): expected failures that are not strict.
PASS_ANYWAY = {
    "input-required-result-unsupported-methods",
    "input-required-result-validate-input",
    "server-sse-polling",
}

pytestmark = pytest.mark.skipif(clients.missing() is not None, reason=str(clients.missing()))


def failures(scenario: str, checks: list[dict]) -> list[str]:
    skip = NOT_APPLICABLE.get(scenario, {})
    return [f for f in clients.failures(checks) if f.split(":")[0] not in skip]


@pytest.fixture(scope="module")
def gateway(database_uri, tmp_path_factory):
    """The endpoint URL and key of an agent with the conformance peer, names kept."""
    peer = start("conformance_server.py")
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
            connector = Connector(name="Conformance", url=peer.base_url + "/mcp")
            agent_id, key, _ = clients.seed_agent([connector], keep_tool_names=True)
        with clients.serve_gateway(app.instance_path, database_uri) as base:
            yield f"{base}/agents/{agent_id}/mcp", key
    finally:
        empty_database(app)
        peer.stop()


@pytest.fixture(scope="module")
def results(gateway):
    """Every scenario of the suite, once per version, through the gateway: ``{version:
    {scenario: checks}}`` (a whole run takes seconds; a run per scenario, a Node start each)."""
    url, key = gateway
    header = f"Authorization: Bearer {key}"
    return both_eras(url, header)


def both_eras(url, header) -> dict:
    """The suite at each version, the two runs side by side (each mostly waits)."""
    with ThreadPoolExecutor(2) as pool:
        runs = {v: pool.submit(clients.conformance, url, v, header) for v in (LEGACY, MODERN)}
        return {version: run.result() for version, run in runs.items()}


def test_the_peer_alone_passes_what_the_gateway_must():
    """Proves the peer and the auth preload: every must-pass scenario, straight at the peer
    (which demands a bearer token, as the gateway demands the key)."""
    peer = start("conformance_server.py", "--bearer", "peer-token")
    try:
        url = f"http://localhost:{peer.port}/mcp"
        header = "Authorization: Bearer peer-token"
        runs = both_eras(url, header)
    finally:
        peer.stop()
    failed = {
        (scenario, version): problems
        for scenario, version in MUST_PASS
        if (problems := failures(scenario, runs[version].get(scenario, [])))
        or scenario not in runs[version]
    }
    assert failed == {}


def test_every_scenario_of_the_suite_is_classified(results):
    """A new suite version with new scenarios makes this fail until each is in MUST_PASS or
    DECLINED."""
    must = {s for s, _ in MUST_PASS}
    unknown = {s for run in results.values() for s in run} - must - set(DECLINED)
    assert unknown == set()


@pytest.mark.parametrize(("scenario", "version"), MUST_PASS)
def test_scenario_passes_through_the_gateway(results, scenario, version):
    assert scenario in results[version], f"the suite did not run {scenario} at {version}"
    assert failures(scenario, results[version][scenario]) == []


@pytest.mark.parametrize(
    "scenario",
    [
        pytest.param(
            scenario, marks=pytest.mark.xfail(reason=reason, strict=scenario not in PASS_ANYWAY)
        )
        for scenario, reason in DECLINED.items()
    ],
)
def test_declined_scenario(results, scenario):
    """Fails wherever the suite runs it (an unexpected pass means the gateway now serves
    what it declined: move the scenario to MUST_PASS)."""
    ran = [checks for run in results.values() if (checks := run.get(scenario))]
    assert ran and all(failures(scenario, checks) == [] for checks in ran)
