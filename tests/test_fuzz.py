"""Property tests (hypothesis) for the parsers that read what a remote server sends and the
validators that guard URLs: any input gives a result or the module's typed error, never
another exception. The metadata parsers get a stand-in client that serves generated JSON
(no network); settings are modest so the file runs in seconds and writes no database."""

import json
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from mcpadmin.protocol import addresses, discovery, registration
from mcpadmin.protocol.endpoints import InsecureEndpoint, check_endpoint, is_loopback
from mcpadmin.protocol.http import Blocked, Http, Response
from mcpadmin.protocol.sse import Event, Parser, SseError, events
from mcpadmin.protocol.urls import FORBIDDEN_CHARACTERS, InvalidURL, check_http_url

# No example database: nothing is written into the repository.
fuzz = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

# -- SSE --------------------------------------------------------------------------------------

line_text = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]))
field_line = st.one_of(
    line_text.map(lambda t: "data: " + t),
    line_text.map(lambda t: "data:" + t),
    line_text.map(lambda t: "event: " + t),
    line_text.map(lambda t: ": " + t),
    line_text.map(lambda t: "id: " + t),
    st.just(""),
)
ending = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def stream_and_cuts(draw):
    """A well-formed stream (lines with mixed line ends, maybe a BOM) and cut points."""
    parts = []
    lines = draw(st.lists(field_line, max_size=20))
    for i, line in enumerate(lines):
        end = draw(ending)
        nxt_blank = i + 1 < len(lines) and lines[i + 1] == ""
        if end == "\r" and nxt_blank:
            end = "\r\n"  # a CR then an empty LF line would read as one CRLF
        parts.append(line + end)
    text = ("\ufeff" if draw(st.booleans()) else "") + "".join(parts) + "\n"
    data = text.encode()
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    return data, cuts


def chunked(data, cuts):
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@fuzz
@given(stream_and_cuts())
def test_any_chunking_of_a_stream_gives_the_same_events(case):
    data, cuts = case
    assert list(events(chunked(data, cuts))) == list(events([data]))


def test_an_empty_chunk_between_cr_and_lf_keeps_them_one_line_end():
    # Found by the property above: the empty chunk used to forget the pending CR.
    assert list(events([b"data: x\r", b"", b"\n"])) == []
    assert list(events([b"data: x\r", b"", b"\n\n"])) == [Event(data="x")]


@fuzz
@given(st.lists(line_text, min_size=1, max_size=5), ending, st.integers(0, 40))
def test_data_lines_are_joined_whatever_the_line_end_and_the_split(values, end, cut):
    data = ("".join(f"data: {v}{end}" for v in values) + end).encode()
    cut = min(cut, len(data))
    assert list(events([data[:cut], data[cut:]])) == [Event(data="\n".join(values))]


@fuzz
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_arbitrary_bytes_give_events_or_the_parsers_error(chunks):
    parser = Parser(max_event_bytes=256)
    try:
        for chunk in chunks:
            for event in parser.feed(chunk):
                assert isinstance(event.data, str) and event.data
    except SseError as exc:
        assert "larger than 256 bytes" in str(exc)


# -- metadata parsers ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),  # fmt: skip
    max_leaves=12,
)
ISSUER = "https://as.example.com"
endpoint_like = st.one_of(
    st.sampled_from([ISSUER + "/authorize", ISSUER + "/token", "javascript:alert(1)",
                     "http://as.example.com/token", "https://u:p@as.example.com/t",
                     "https://as.example.com/a b", "data:,x", "https://as.example.com:99999/"]),
    st.text(max_size=30), st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=2),
)  # fmt: skip
metadata_docs = (
    st.fixed_dictionaries(
        {},
        optional={
            "issuer": st.sampled_from([ISSUER, ISSUER + "/", None, 3]),
            "authorization_endpoint": endpoint_like,
            "token_endpoint": endpoint_like,
            "registration_endpoint": endpoint_like,
            "revocation_endpoint": endpoint_like,
            "scopes_supported": json_values,
            "code_challenge_methods_supported": json_values,
            "token_endpoint_auth_methods_supported": json_values,
            "client_id_metadata_document_supported": json_values,
            "authorization_servers": st.sampled_from([[ISSUER], [], None, [3], "x"]),
            "resource": st.sampled_from(["https://mcp.example.com/mcp", "https://evil", 1, None]),
        },
    )
    | json_values
)


class Canned:
    """Stands in for ``Http``: answers every URL with one status and body, no network."""

    def __init__(self, status, body: bytes, header=None):
        self.status, self.body, self.header = status, body, header

    def _response(self, url):
        headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        if self.header is not None:
            headers["WWW-Authenticate"] = self.header
        return Response(self.status, headers, self.body, url)

    def get(self, url, **kwargs):
        return self._response(url)

    post = get

    def open(self, method, url, **kwargs):
        response = self._response(url)

        class Opened:
            status, headers = response.status, response.headers

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return None

        return Opened()


def as_body(doc) -> bytes:
    return json.dumps(doc).encode()


@fuzz
@given(metadata_docs, st.sampled_from([200, 401, 404, 500]), st.text(max_size=80))
def test_discovery_of_arbitrary_metadata_gives_checked_endpoints_or_its_error(doc, status, hdr):
    try:
        found = discovery.discover(Canned(status, as_body(doc), hdr), "https://mcp.example.com/mcp")
    except discovery.DiscoveryError as exc:
        assert str(exc) and isinstance(exc.log, list)
        return
    for name in ("authorization_endpoint", "token_endpoint", "registration_endpoint",
                 "revocation_endpoint"):  # fmt: skip
        value = getattr(found, name)
        if value is not None:
            assert check_endpoint(value) == value


@fuzz
@given(st.binary(max_size=64))
def test_discovery_of_arbitrary_bytes_gives_its_error(body):
    with pytest.raises(discovery.DiscoveryError):
        discovery.discover(Canned(200, body), "https://mcp.example.com/mcp")


@fuzz
@given(st.text(max_size=200))
def test_www_authenticate_of_any_text_is_a_dict_of_strings(header):
    params = discovery.parse_www_authenticate(header)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in params.items())


@fuzz
@given(json_values | metadata_docs, st.sampled_from([200, 201, 400, 500]))
def test_registration_answer_of_any_json_is_a_client_or_its_error(doc, status):
    metadata = registration.client_metadata("https://admin.example.com/cb", "none")
    try:
        client = registration.register(Canned(status, as_body(doc)), ISSUER + "/reg", metadata)
    except registration.RegistrationError as exc:
        assert str(exc)
        return
    assert isinstance(client.client_id, str)


# -- URL validators -----------------------------------------------------------------------------

url_like = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, rest: scheme + rest,
        st.sampled_from(
            [
                "https://",
                "http://",
                "HTTPS://",
                "javascript:",
                "JavaScript:",
                "data:",
                "file://",
                "ftp://",
                " https://",
                "https:",
                "//",
                "",
            ]
        ),
        st.text(max_size=40),
    ),  # fmt: skip
    st.builds(
        lambda host, ch, tail: f"https://{host}/{ch}{tail}",
        st.sampled_from(["example.com", "127.0.0.1", "[::1]", "localhost:8080"]),
        st.sampled_from(sorted(FORBIDDEN_CHARACTERS) + [" ", "\t", "\n", "\x00", "\u200b"]),
        st.text(max_size=10),
    ),
)


def assert_plain_http(url):
    parts = urlsplit(url)
    assert parts.scheme.lower() in ("http", "https") and parts.hostname
    assert not FORBIDDEN_CHARACTERS & set(url)
    assert not any(ch.isspace() or ord(ch) < 0x20 for ch in url)
    assert "@" not in parts.netloc


@fuzz
@given(url_like)
def test_server_urls_accepted_are_plain_http_with_a_host(value):
    try:
        assert_plain_http(check_http_url(value))
    except InvalidURL as exc:
        assert str(exc)


@fuzz
@given(url_like, st.booleans())
def test_endpoints_accepted_are_https_or_loopback_http(value, loopback):
    try:
        accepted = check_endpoint(value, allow_http_loopback=loopback)
    except InsecureEndpoint as exc:
        assert str(exc)
        return
    assert_plain_http(accepted)
    parts = urlsplit(accepted)
    assert parts.scheme.lower() == "https" or (loopback and is_loopback(parts.hostname))


@fuzz
@given(url_like)
def test_the_client_refuses_before_sending_anything_but_http_urls(value):
    http = Http(allow_private=False)
    try:
        http.check_address(value)
    except Blocked as exc:
        assert str(exc)
        return
    parts = urlsplit(value)
    assert parts.scheme.lower() in ("http", "https") and parts.hostname
    assert "@" not in parts.netloc


@fuzz
@given(st.integers(0, 2**32 - 1))
def test_every_spelling_of_an_ipv4_address_parses_to_that_address(number):
    octets = number.to_bytes(4, "big")
    dotted = ".".join(str(b) for b in octets)
    spellings = [dotted, str(number), hex(number), ".".join(f"0{b:o}" for b in octets),
                 f"{octets[0]}.{number & 0xFFFFFF}", f"[::ffff:{dotted}]"]  # fmt: skip
    parsed = {addresses.parse_ip(s) for s in spellings}
    ip = addresses.parse_ip(dotted)
    assert {addresses.embedded_ipv4(p) or p for p in parsed} == {ip}
