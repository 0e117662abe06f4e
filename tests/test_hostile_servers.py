"""Hostile servers (tests/peers/hostile_server.py): every misbehaviour is cut off within the
deadline and the size cap, as a typed ``HttpError`` with a readable message, and the server
sees the connection closed (the worker is freed), by both outbound clients (``outbound``:
``Http`` and the data plane's ``AsyncHttp``). The MCP client, discovery and the token request
surface the same failures as their own typed errors."""

import time
import tracemalloc

import pytest

from mcpadmin.protocol import discovery, tokens
from mcpadmin.protocol.http import BadResponse, Blocked, Http, Interrupted, Timeout, TooLarge
from mcpadmin.protocol.mcp import Client, McpError
from tests.peers import hostile_server

DEADLINE = 3.0
SLACK = 5.0  # generous: two shared cores, other suites running
CAP = 1024 * 1024
CHUNK = 16 * 1024
MODERN = {"era": "modern", "version": "2026-07-28"}


@pytest.fixture(scope="module")
def hostile():
    server = hostile_server.start()
    yield server
    hostile_server.stop(server)


@pytest.fixture(scope="module")
def bystander():
    """Another origin that must never receive what a redirect tried to send it."""
    server = hostile_server.start()
    yield server
    hostile_server.stop(server)


SETTINGS = {"timeout": 1.0, "deadline": DEADLINE, "max_bytes": CAP, "allow_private": True}


def http(**overrides) -> Http:
    return Http(**{**SETTINGS, **overrides})


@pytest.fixture
def http_client(outbound):
    """Either client (``outbound``) with these settings."""
    return outbound(**SETTINGS)


def failure(call, kind):
    """Run ``call``; return the ``kind`` it raised and how long it took."""
    started = time.monotonic()
    with pytest.raises(kind) as info:
        call()
    return info.value, time.monotonic() - started


def freed(server, path) -> bool:
    return server.last(path).hung_up.wait(10)


def read_until_refused(client, url) -> tuple[Exception, int]:
    """Stream ``url`` through ``client``; the error and the decoded bytes handed out."""
    handed_out = 0
    with client.open("GET", url) as stream, pytest.raises(TooLarge) as info:
        for chunk in stream.chunks():
            handed_out += len(chunk)
    return info.value, handed_out


def test_slowloris_headers_are_cut_off_at_the_deadline(http_client, hostile):
    error, elapsed = failure(lambda: http_client.get(hostile.base_url + "/slow-headers"), Timeout)
    assert elapsed < DEADLINE + SLACK
    assert "did not answer in time" in str(error)
    assert freed(hostile, "/slow-headers")


def test_slow_drip_body_is_cut_off_at_the_deadline_though_no_read_times_out(http_client, hostile):
    error, elapsed = failure(lambda: http_client.get(hostile.base_url + "/slow-body"), Timeout)
    assert elapsed < DEADLINE + SLACK
    assert "did not finish answering in time" in str(error)
    assert freed(hostile, "/slow-body")


def test_endless_body_stops_at_the_size_cap(http_client, hostile):
    error, handed_out = read_until_refused(http_client, hostile.base_url + "/endless")
    assert handed_out <= CAP
    assert f"more than {CAP} bytes" in str(error)
    assert freed(hostile, "/endless")


def test_announced_50_mb_json_is_refused_before_the_body_is_read(http_client, hostile):
    url = hostile.base_url + "/big-json?announce=1"
    error, _ = failure(lambda: http_client.get(url), TooLarge)
    assert "announced a 52428800-byte answer" in str(error)
    assert freed(hostile, "/big-json")


def test_unannounced_50_mb_json_stops_at_the_size_cap(http_client, hostile):
    error, handed_out = read_until_refused(http_client, hostile.base_url + "/big-json")
    assert handed_out <= CAP
    assert freed(hostile, "/big-json")
    assert hostile.last("/big-json").sent < 50 * 1024 * 1024


def test_gzip_bomb_is_cut_at_the_cap_without_being_inflated(http_client, hostile):
    hostile.bomb()  # built before measuring
    tracemalloc.start()
    try:
        error, handed_out = read_until_refused(http_client, hostile.base_url + "/gzip-bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert handed_out <= CAP
    assert peak < 8 * CAP  # the bomb inflates to 64 MB
    assert freed(hostile, "/gzip-bomb")


def test_event_stream_without_a_line_end_is_an_mcp_error_at_the_cap(hostile):
    client = Client(http(), hostile.base_url + "/sse-no-newline", **MODERN)
    error, elapsed = failure(client.list_tools, McpError)
    assert f"more than {CAP} bytes" in str(error)
    assert elapsed < DEADLINE + SLACK
    assert freed(hostile, "/sse-no-newline")


def test_endless_data_line_is_refused_by_the_event_size_limit(hostile):
    # The parser's 5 MB event limit trips first: the deadline is not what is tested here, and
    # 5 MB can take the peer longer than DEADLINE to send on two CPUs shared by four workers.
    big = http(max_bytes=64 * CAP, deadline=30.0)
    client = Client(big, hostile.base_url + "/sse-endless-data", **MODERN)
    error, _ = failure(client.list_tools, McpError)
    assert "event stream is unusable" in str(error)
    assert "larger than" in str(error)
    assert freed(hostile, "/sse-endless-data")


def test_keep_alive_comments_forever_time_out_as_an_mcp_error(hostile):
    client = Client(http(), hostile.base_url + "/sse-drip", **MODERN)
    error, elapsed = failure(client.list_tools, McpError)
    assert "in time" in str(error)
    assert elapsed < DEADLINE + SLACK
    assert freed(hostile, "/sse-drip")


def test_slow_mcp_server_is_an_mcp_error_within_the_deadline(hostile):
    client = Client(http(), hostile.base_url + "/slow-headers", **MODERN)
    error, elapsed = failure(client.list_tools, McpError)
    assert "did not answer in time" in str(error)
    assert elapsed < DEADLINE + SLACK


def test_gzip_bomb_to_the_mcp_client_is_an_mcp_error(hostile):
    client = Client(http(), hostile.base_url + "/gzip-bomb", **MODERN)
    error, _ = failure(client.list_tools, McpError)
    assert f"more than {CAP} bytes" in str(error)


def test_body_dropped_mid_answer_is_interrupted(http_client, hostile):
    error, _ = failure(lambda: http_client.get(hostile.base_url + "/drop"), Interrupted)
    assert "closed the connection before its answer was complete" in str(error)


def test_token_endpoint_307_to_another_host_does_not_resend_the_code(hostile, bystander):
    target = f"{bystander.base_url}/stolen"
    endpoint = f"{hostile.base_url}/redirect?status=307&to={target}"
    client = tokens.ClientAuth("cid", "the-secret", "client_secret_post")
    error, _ = failure(
        lambda: tokens.exchange_code(
            http(),
            endpoint,
            client,
            code="the-code",
            verifier="the-verifier",
            redirect_uri="https://a/cb",
            resource="https://mcp",
        ),  # fmt: skip
        tokens.TokenError,
    )
    assert f"redirected to {target}" in str(error)
    assert "does not follow redirects for POST" in str(error)
    assert bystander.requests_to("/stolen") == []
    assert b"the-code" in hostile.last("/redirect").body  # sent once, to the endpoint only


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_post_is_never_redirected_even_when_redirects_are_allowed(
    http_client, hostile, bystander, status
):
    endpoint = f"{hostile.base_url}/redirect?status={status}&to={bystander.base_url}/stolen"
    error, _ = failure(lambda: http_client.post(endpoint, data={"a": "b"}, redirects=5), Blocked)
    assert "does not follow redirects for POST" in str(error)
    assert bystander.requests_to("/stolen") == []


def test_redirect_loop_stops_at_the_limit(http_client, hostile):
    before = len(hostile.requests_to("/loop"))
    error, _ = failure(lambda: http_client.get(hostile.base_url + "/loop", redirects=3), Blocked)
    assert "redirected more than 3 time(s)" in str(error)
    assert len(hostile.requests_to("/loop")) - before <= 4


@pytest.mark.parametrize("target", ["file:///etc/passwd", "javascript:alert(1)", "data:,x"])
def test_redirect_to_another_scheme_is_refused(http_client, hostile, target):
    url = f"{hostile.base_url}/redirect?to={target}"
    error, _ = failure(lambda: http_client.get(url, redirects=2), Blocked)
    assert "is not an http(s) URL" in str(error)


def test_discovery_logs_a_gzip_bomb_as_metadata_and_fails_clearly(hostile):
    server_url = f"{hostile.base_url}/challenge/mcp?rm=gzip-bomb"
    started = time.monotonic()
    with pytest.raises(discovery.DiscoveryError) as info:
        discovery.discover(http(), server_url)
    assert time.monotonic() - started < 3 * DEADLINE + SLACK
    bomb = [e for e in info.value.log if e["url"].endswith("/gzip-bomb")]
    assert bomb and f"more than {CAP} bytes" in bomb[0]["outcome"]


def test_discovery_probe_that_never_answers_is_logged_as_a_timeout(hostile):
    with pytest.raises(discovery.DiscoveryError) as info:
        discovery.discover(http(), hostile.base_url + "/slow-headers")
    probe = info.value.log[0]
    assert probe["step"] == "probe" and "did not answer in time" in probe["outcome"]


def test_undecodable_gzip_is_a_bad_response(http_client, hostile):
    error, _ = failure(lambda: http_client.get(hostile.base_url + "/bad-gzip"), BadResponse)
    assert "could not be decompressed" in str(error)


def test_the_observer_hears_of_each_exchange_once_however_it_ended(outbound, hostile):
    heard = []
    http = outbound(**SETTINGS, observer=heard.append)
    http.get(hostile.base_url + "/ok")
    with pytest.raises(TooLarge):
        http.get(hostile.base_url + "/endless")
    with pytest.raises(Blocked):
        http.get("http://169.254.169.254/latest/meta-data/")
    assert [(e.method, e.status, e.error) for e in heard] == [
        ("GET", 200, None), ("GET", 200, "TooLarge"), ("GET", None, "Blocked"),
    ]  # fmt: skip
    assert heard[0].response_bytes == 2 and 0 < heard[1].response_bytes <= CAP


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_answers_are_inflated(http_client, hostile, coding):
    answer = http_client.get(f"{hostile.base_url}/compressed?coding={coding}")
    assert answer.json() == {"items": list(range(20000))}
