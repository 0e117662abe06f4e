"""Server-Sent Events parsing, as the WHATWG HTML standard defines it (§9.2.6 "Interpreting an
event stream"), which MCP's Streamable HTTP uses for responses [26/http §Receiving Messages].

Pure: bytes in, events out. The caller bounds the total size and time (``Http.open``); this
module bounds one event's size so a stream that never sends a blank line cannot grow a buffer
without limit.
"""

import codecs
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_EVENT_BYTES = 5 * 1024 * 1024


class SseError(ValueError):
    """The stream is not usable as an event stream; the message says why."""


@dataclass
class Event:
    data: str
    event: str = "message"  # WHATWG default when no ``event:`` field is given
    id: str | None = None
    retry: int | None = None


class Parser:
    """Incremental parser: ``feed`` bytes as they arrive, get the complete events back.

    Lines end in CRLF, LF or CR (a CR at the end of one chunk and an LF at the start of the
    next are one line end). Lines starting with ``:`` are comments (keep-alives) and ignored.
    An event whose data is empty is not dispatched; an unfinished event at the end of the
    stream is discarded.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._skip_lf = False  # the previous chunk ended in CR
        self._first = True
        self._data: list[str] = []
        self._size = 0
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[Event]:
        """:raise SseError: one event grew past the size limit."""
        text = self._decoder.decode(chunk)
        if self._first and text:
            text = text.removeprefix("\ufeff")  # one leading BOM is ignored
            self._first = False
        if text:  # an empty chunk (or half a character) must not forget a pending CR
            if self._skip_lf and text.startswith("\n"):
                text = text[1:]
            self._skip_lf = False
        self._buffer += text
        events = []
        start = 0
        buffer = self._buffer
        while True:
            cr, lf = buffer.find("\r", start), buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            end = lf if cr == -1 or (lf != -1 and lf < cr) else cr
            line = buffer[start:end]
            if buffer[end] == "\r":
                if end + 1 == len(buffer):
                    self._skip_lf = True  # the LF of a CRLF may come in the next chunk
                elif buffer[end + 1] == "\n":
                    end += 1
            start = end + 1
            event = self._line(line)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        if len(self._buffer) + self._size > self._max:
            raise SseError(f"an event in the stream is larger than {self._max} bytes")
        return events

    def _line(self, line: str) -> Event | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._size += len(value) + 1
            if self._size > self._max:
                raise SseError(f"an event in the stream is larger than {self._max} bytes")
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None  # other field names are ignored

    def _dispatch(self) -> Event | None:
        data, event_type = "\n".join(self._data), self._event or "message"
        had_data = bool(self._data)
        self._data, self._size, self._event = [], 0, ""
        if not had_data:
            return None
        return Event(data=data, event=event_type, id=self._last_id, retry=self._retry)


def events(chunks: Iterable[bytes], max_event_bytes: int = MAX_EVENT_BYTES) -> Iterator[Event]:
    """The events of a stream given as byte chunks, in order, as soon as each is complete.

    :raise SseError: one event grew past ``max_event_bytes``.
    """
    parser = Parser(max_event_bytes)
    for chunk in chunks:
        yield from parser.feed(chunk)
