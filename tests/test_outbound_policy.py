"""The outbound address policy with private networks off: literal private addresses in every
spelling are refused before any lookup, resolved names are checked where the connection is
made, the connection goes to the address that was checked (no DNS rebinding), and redirects
are checked hop by hop. Name resolution is simulated by replacing ``socket.getaddrinfo``;
the only server is the hostile one on 127.0.0.1, exempted by ``allow_addresses``. Every test
runs against both clients (``outbound``: the admin side's ``Http``, the data plane's
``AsyncHttp``)."""

import socket

import pytest

from mcpadmin.protocol.http import Blocked, Unreachable
from tests.peers import hostile_server


@pytest.fixture(scope="module")
def hostile():
    server = hostile_server.start()
    yield server
    hostile_server.stop(server)


def strict(outbound, hostile=None):
    """Private networks off; only the hostile server's own address:port is let through."""
    allowed = {("127.0.0.1", hostile.port)} if hostile else set()
    return outbound(timeout=2, allow_private=False, allow_addresses=frozenset(allowed))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/", "http://localhost/", "http://api.localhost/", "http://2130706433/",
        "http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/", "http://0/",
        "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
        "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::]/", "http://10.0.0.1/",
        "http://172.16.0.1/", "http://192.168.1.1/", "http://100.64.0.1/",
        "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://0.0.0.0/",
        "http://224.0.0.1/",
    ],
)  # fmt: skip
def test_literal_private_addresses_in_every_spelling_are_refused_without_a_lookup(
    outbound, url, dns
):
    with pytest.raises(Blocked, match="(private networks|loopback addresses) are off: set "):
        strict(outbound).get(url)
    assert dns.lookups == []


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/",
     "http://metadata.google.internal/computeMetadata/v1/", "http://METADATA.google.internal./",
     "http://[::ffff:169.254.169.254]/", "http://2852039166/"],
)  # fmt: skip
def test_cloud_metadata_is_refused_even_when_private_networks_are_allowed(outbound, url, dns):
    with pytest.raises(Blocked, match="never go there"):
        outbound(allow_private=True).get(url)
    assert dns.lookups == []


def test_a_public_name_resolving_to_a_private_address_is_refused(outbound, dns):
    dns["internal.example.com"] = ["10.0.0.1"]
    with pytest.raises(Blocked) as info:
        strict(outbound).get("https://internal.example.com/mcp")
    assert str(info.value).startswith("internal.example.com is 10.0.0.1, a private")


def test_a_name_with_one_private_address_among_public_ones_is_refused(outbound, monkeypatch):
    real = socket.getaddrinfo

    def mixed(host, port, *args, **kwargs):
        return real("93.184.216.34", port, *args, **kwargs) + real("127.0.0.1", port, *args,
                                                                    **kwargs)  # fmt: skip

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    with pytest.raises(Blocked, match="127.0.0.1, a loopback address"):
        strict(outbound).get("https://split.example.com/")


def test_a_name_that_does_not_resolve_is_unreachable(outbound, dns):
    with pytest.raises(Unreachable, match="nowhere.example.com does not resolve"):
        strict(outbound).get("https://nowhere.example.com/")


def test_the_connection_goes_to_the_checked_address_and_the_name_is_looked_up_once(
    outbound, hostile, dns
):
    # A rebinding name: a permitted address first, a private one on every later lookup.
    dns["rebind.example.com"] = ["127.0.0.1", "10.0.0.1"]
    response = strict(outbound, hostile).get(f"http://rebind.example.com:{hostile.port}/ok")
    assert response.status == 200
    assert dns.lookups == ["rebind.example.com"]
    assert hostile.last("/ok").headers["host"] == f"rebind.example.com:{hostile.port}"


def test_a_rebinding_name_that_answers_private_at_connect_time_is_refused(outbound, hostile, dns):
    dns["rebind2.example.com"] = ["10.0.0.1", "127.0.0.1"]
    before = len(hostile.seen)
    with pytest.raises(Blocked, match="10.0.0.1"):
        strict(outbound, hostile).get(f"http://rebind2.example.com:{hostile.port}/ok")
    assert len(hostile.seen) == before


@pytest.mark.parametrize(
    "target",
    ["http://10.0.0.1/x", "http://localhost:{port}/ok", "http://internal.example.com:{port}/ok",
     "http://[::ffff:127.0.0.1]:{port}/ok", "http://169.254.169.254/latest/meta-data/"],
)  # fmt: skip
def test_a_public_name_that_redirects_to_a_private_one_is_refused(outbound, hostile, dns, target):
    dns["public.example.com"] = ["127.0.0.1"]
    dns["internal.example.com"] = ["10.0.0.1"]
    target = target.format(port=hostile.port)
    url = f"http://public.example.com:{hostile.port}/redirect?to={target}"
    reached = len(hostile.requests_to("/ok"))
    with pytest.raises(Blocked):
        strict(outbound, hostile).get(url, redirects=3)
    assert hostile.last("/redirect").headers["host"] == f"public.example.com:{hostile.port}"
    assert len(hostile.requests_to("/ok")) == reached


def test_a_cross_origin_redirect_drops_credentials(outbound, hostile):
    other = hostile_server.start()
    try:
        url = f"{hostile.base_url}/redirect?to={other.base_url}/ok"
        headers = {"Authorization": "Bearer secret", "X-API-Key": "key", "Accept": "text/x"}
        outbound(allow_private=True).get(url, headers=headers, redirects=1)
        seen = other.last("/ok").headers
    finally:
        hostile_server.stop(other)
    assert "authorization" not in seen and "x-api-key" not in seen
    assert seen["accept"] == "text/x"


def test_a_same_origin_redirect_keeps_the_headers(outbound, hostile):
    url = f"{hostile.base_url}/redirect?to=/ok"
    outbound(allow_private=True).get(url, headers={"Authorization": "Bearer t"}, redirects=1)
    assert hostile.last("/ok").headers["authorization"] == "Bearer t"


def test_proxies_from_the_environment_are_ignored(outbound, hostile, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("http_proxy", "http://10.0.0.1:3128")
    assert outbound(timeout=2, allow_private=True).get(hostile.base_url + "/ok").status == 200


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/", "file:///etc/passwd", "javascript:alert(1)", "https://u:p@example.com/",
     "http:///nohost", "http://example.com:99999/"],
)  # fmt: skip
def test_urls_that_are_not_plain_http_are_refused_before_anything_is_sent(outbound, url, dns):
    with pytest.raises(Blocked):
        outbound(allow_private=True).get(url)
    assert dns.lookups == []
