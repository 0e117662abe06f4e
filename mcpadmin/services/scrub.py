"""Keeping credentials out of text and JSON that others wrote: the one scrubbing rule.

A credential value is replaced by ``SCRUBBED`` wherever it occurs whole, and so is every run of
``RUN`` or more of its characters: an upstream that echoes a token cut short, or a message cut
before it reached us, still gives the token up. Values shorter than ``RUN`` are replaced only
whole. In JSON every string is scrubbed, object keys included, and a number whose digits hold a
credential becomes the string ``SCRUBBED``.

Scrub, then cut: ``Scrubber.line`` is the way to quote foreign words in a sentence of ours, so
no cut can leave a piece of a credential too short to be recognised.

Cost: this runs on every message relayed to an agent. Every run of ``RUN`` characters of a
value holds one of its ``BLOCK``-character blocks at offsets 0, ``STRIDE``, 2 × ``STRIDE`` … (a
run starting just after a block's start still reaches the end of the next one), so a text
holding none of those blocks, nor a short value, is left as it is after one ``in`` test a block
(C speed, time linear in the text); runs are measured only around a block that is found.
"""

import json
from collections.abc import Iterable

SCRUBBED = "[credential]"
RUN = 12  # this many characters of a credential, in a row, are the credential
BLOCK = RUN // 2  # every run of RUN characters of a value holds one whole block …
STRIDE = RUN - BLOCK + 1  # … of those starting at these offsets


class Scrubber:
    """Replaces the given credential values (empty ones ignored) in text and JSON."""

    def __init__(self, secrets: Iterable[str]):
        values = {s for s in secrets if s}
        self._whole = sorted(s for s in values if len(s) < RUN)
        long = {s for s in values if len(s) >= RUN}
        # A run of a long value held in another long value is a run of that other one.
        long = {s for s in long if not any(s != other and s in other for other in long)}
        # block -> (value, offset) of each place it stands at in a long value
        self._blocks: dict[str, list[tuple[str, int]]] = {}
        for secret in sorted(long):
            for offset in range(0, len(secret) - BLOCK + 1, STRIDE):
                self._blocks.setdefault(secret[offset : offset + BLOCK], []).append(
                    (secret, offset)
                )
        self._needles = (*self._whole, *self._blocks)
        # The same, as ``json.dumps`` writes them inside a string (it escapes characters one
        # by one, so a value in a string of a document is its escaped form in the document).
        self._escaped = tuple({_escaped(needle) for needle in self._needles})

    def text(self, text: str) -> str:
        """``text`` with every whole value, and every run of ``RUN`` or more characters of a
        value, replaced by ``SCRUBBED`` (overlapping or adjacent ones by one); ``text`` itself
        when none occurs."""
        if not any(needle in text for needle in self._needles):
            return text
        spans = _merged(text, self._spans(text))
        if not spans:
            return text
        pieces, done = [], 0
        for start, end in spans:
            pieces += [text[done:start], SCRUBBED]
            done = end
        pieces.append(text[done:])
        return "".join(pieces)

    def json(self, value):
        """``value`` (decoded JSON) with every string scrubbed as ``text`` does, object keys
        included (two keys that scrub alike stay two: the later gets `` (2)``, `` (3)`` …),
        and a number that holds a credential replaced by ``SCRUBBED``: a copy when anything
        was replaced, else ``value`` itself."""
        if not self._escaped:
            return value
        written = json.dumps(value, ensure_ascii=False)
        if not any(needle in written for needle in self._escaped):
            return value
        return self._walk(value)

    def line(self, text, limit: int) -> str:
        """``text`` (any object, as ``str``) scrubbed, then as ``one_line`` cuts it."""
        return one_line(self.text(str(text)), limit)

    def _walk(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return self._object(value)
        if isinstance(value, list):
            items = [self._walk(item) for item in value]
            same = all(new is old for new, old in zip(items, value, strict=True))
            return value if same else items
        if isinstance(value, int | float) and not isinstance(value, bool):
            written = json.dumps(value)
            return value if self.text(written) == written else SCRUBBED
        return value

    def _object(self, value: dict) -> dict:
        keys = {key: self.text(key) if isinstance(key, str) else key for key in value}
        taken = {key for key, new in keys.items() if new == key}
        result, changed = {}, len(taken) < len(keys)
        for key, item in value.items():
            new = keys[key]
            if new != key:
                new = _free(new, taken)
                taken.add(new)
            result[new] = self._walk(item)
            changed = changed or result[new] is not item
        return result if changed else value

    def _spans(self, text: str) -> Iterable[tuple[int, int]]:
        """(start, end) of each whole short value and each longest run of ``RUN`` or more
        characters of a long value in ``text``."""
        for secret in self._whole:
            at = text.find(secret)
            while at != -1:
                yield at, at + len(secret)
                at = text.find(secret, at + 1)
        # (value, where it would start in text) -> the runs measured at that alignment (one
        # alignment may hold several, apart where the text differs from the value)
        measured: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for block, places in self._blocks.items():
            at = text.find(block)
            while at != -1:
                for secret, offset in places:
                    runs = measured.setdefault((secret, at - offset), [])
                    if not any(start <= at < end for start, end in runs):
                        start, end = _run(text, at, secret, offset)
                        runs.append((start, end))
                        if end - start >= RUN:
                            yield start, end
                at = text.find(block, at + 1)


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (white space runs made one space) of at most ``limit``
    characters, ``…`` ending a cut one. Cuts only: give it scrubbed text (``Scrubber.line``)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _merged(text: str, spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``spans`` of ``text`` in order, overlapping or adjacent ones made one, white space at
    their edges left out (the space of "Bearer <token>" tells nothing)."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    trimmed = []
    for start, end in merged:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            trimmed.append((start, end))
    return trimmed


def _run(text: str, at: int, secret: str, offset: int) -> tuple[int, int]:
    """The longest stretch of ``text`` around the block at ``at`` that matches ``secret``
    with the block at ``offset`` of it: (start, end) in ``text``."""
    before, most = 0, min(at, offset)
    while before < most and text[at - before - 1] == secret[offset - before - 1]:
        before += 1
    after, most = 0, min(len(text) - at, len(secret) - offset) - BLOCK
    while after < most and text[at + BLOCK + after] == secret[offset + BLOCK + after]:
        after += 1
    return at - before, at + BLOCK + after


def _free(name: str, taken: set) -> str:
    """``name``, or the first of ``name (2)``, ``name (3)`` … not in ``taken``."""
    number, found = 2, name
    while found in taken:
        found, number = f"{name} ({number})", number + 1
    return found


def _escaped(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]
