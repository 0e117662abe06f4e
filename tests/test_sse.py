"""The SSE parser against the WHATWG rules MCP responses rely on."""

import pytest

from mcpadmin.protocol.sse import Event, Parser, SseError, events


def parse(*chunks):
    return list(events(chunks))


def test_multi_line_data_is_joined_with_newlines():
    assert parse(b"data: a\ndata: b\n\n") == [Event(data="a\nb")]


def test_crlf_cr_and_lf_line_ends_all_work():
    assert parse(b"data: 1\r\n\r\ndata: 2\r\rdata: 3\n\n") == [
        Event(data="1"), Event(data="2"), Event(data="3")
    ]  # fmt: skip


def test_crlf_split_across_chunks_is_one_line_end():
    assert parse(b"data: x\r", b"\n\r", b"\ndata: y\n\n") == [Event(data="x"), Event(data="y")]


def test_comments_are_ignored():
    assert parse(b": ping\n\n: keep-alive\ndata: z\n\n") == [Event(data="z")]


def test_event_id_and_retry_fields_are_read():
    [event] = parse(b"event: message\nid: 7\nretry: 1500\ndata: {}\n\n")
    assert (event.event, event.id, event.retry, event.data) == ("message", "7", 1500, "{}")


def test_event_type_defaults_to_message_and_unknown_fields_are_ignored():
    assert parse(b"foo: bar\ndata:no-space\n\n") == [Event(data="no-space")]


def test_several_messages_in_one_chunk_and_one_message_over_many_chunks():
    assert parse(b"data: a\n\ndata: b\n\n") == [Event(data="a"), Event(data="b")]
    assert parse(b"da", b"ta: he", b"llo\n", b"\n") == [Event(data="hello")]


def test_unfinished_event_at_the_end_is_discarded():
    assert parse(b"data: complete\n\ndata: cut") == [Event(data="complete")]


def test_utf8_split_inside_a_character_and_a_leading_bom():
    text = "data: é\n\n".encode()
    assert parse(b"\xef\xbb\xbf" + text[:7], text[7:]) == [Event(data="é")]


def test_an_event_larger_than_the_limit_is_refused():
    parser = Parser(max_event_bytes=10)
    with pytest.raises(SseError):
        parser.feed(b"data: 0123456789abc\n")
    with pytest.raises(SseError):
        Parser(max_event_bytes=10).feed(b"data: no line end yet and long")
