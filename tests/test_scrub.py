"""The scrubbing rule (``services.scrub``): whole credential values and every run of ``RUN`` or
more of their characters are replaced, in text and in JSON (keys included), before any cut;
shorter values only whole; text without any is returned as it is. A generated-input property
holds the fast implementation to a plain character-by-character reading of the rule."""

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from mcpadmin.services.scrub import RUN, SCRUBBED, Scrubber, one_line

TOKEN = "tok-3f9A7qLmZ0xW2vB8nC5dE1rT6yU4iO"  # noqa: S105 (34 characters, made up)
HEADER = f"Bearer {TOKEN}"


def longest_piece(text: str, secret: str) -> int:
    """The length of the longest run of ``secret``'s characters that ``text`` holds."""
    for length in range(len(secret), 0, -1):
        if any(secret[i : i + length] in text for i in range(len(secret) - length + 1)):
            return length
    return 0


def test_text_without_a_credential_is_returned_as_it_is():
    text = "nothing secret here, although it says Bearer and tok-3f9"
    assert Scrubber([HEADER, TOKEN]).text(text) is text


def test_a_whole_value_is_replaced():
    assert Scrubber([HEADER, TOKEN]).text(f"you sent {HEADER}.") == f"you sent {SCRUBBED}."


def test_a_run_of_twelve_characters_is_the_credential_and_eleven_are_not():
    scrubber = Scrubber([TOKEN])
    assert scrubber.text(f"token {TOKEN[5 : 5 + RUN]}!") == f"token {SCRUBBED}!"
    eleven = f"token {TOKEN[5 : 5 + RUN - 1]}!"
    assert scrubber.text(eleven) == eleven


def test_a_run_of_twelve_starting_anywhere_in_the_credential_is_found():
    scrubber = Scrubber([TOKEN])
    for start in range(len(TOKEN) - RUN + 1):
        assert scrubber.text(f"<{TOKEN[start : start + RUN]}>") == f"<{SCRUBBED}>", start


def test_a_run_after_a_changed_character_is_found_though_the_run_before_it_is_short():
    # Both stretches line up with the value the same way; only the second is long enough.
    text = TOKEN[:8] + "#" + TOKEN[9:]
    assert Scrubber([TOKEN]).text(text) == TOKEN[:8] + "#" + SCRUBBED


def test_a_credential_cut_at_either_end_of_the_text_is_replaced():
    scrubber = Scrubber([TOKEN])
    assert scrubber.text(f"sent {TOKEN[:-9]}") == f"sent {SCRUBBED}"
    assert scrubber.text(f"{TOKEN[9:]} was sent") == f"{SCRUBBED} was sent"


def test_overlapping_and_adjacent_runs_become_one_marker():
    scrubber = Scrubber([TOKEN, "another-credential-value"])
    text = TOKEN[:20] + TOKEN[14:] + "another-credential-value"
    assert scrubber.text(text) == SCRUBBED


def test_the_space_of_bearer_stays_outside_the_marker():
    scrubber = Scrubber([HEADER, TOKEN])
    assert scrubber.text(f"got Bearer {TOKEN[:15]}") == f"got {SCRUBBED}"
    assert scrubber.text(f"got x {TOKEN[:15]}") == f"got x {SCRUBBED}"


def test_a_short_value_is_replaced_only_whole():
    scrubber = Scrubber(["k3y-short"])  # 9 characters: below RUN
    assert scrubber.text("key k3y-short used") == f"key {SCRUBBED} used"
    assert scrubber.text("key k3y-shor used") == "key k3y-shor used"


def test_line_scrubs_before_it_cuts():
    # The token straddles the cut: cutting first would leave 10 characters that no longer
    # hold the whole value, and a run scrubber would then see a fragment too short to match.
    text = "x" * 280 + f" you sent {TOKEN} and more"
    line = Scrubber([TOKEN]).line(text, 300)
    assert len(line) <= 300 and longest_piece(line, TOKEN) < 3, line


def test_one_line_makes_one_line_and_cuts_with_an_ellipsis():
    assert one_line("a\n b\t\tc", 10) == "a b c"
    assert one_line("y" * 20, 10) == "y" * 9 + "…"


def test_json_keys_are_scrubbed_and_stay_distinct():
    value = {"structuredContent": {TOKEN: 1, TOKEN[:-3]: 2, SCRUBBED: 3, "city": "Oslo"}}
    scrubbed = Scrubber([TOKEN]).json(value)
    assert scrubbed["structuredContent"] == {
        f"{SCRUBBED} (2)": 1,
        f"{SCRUBBED} (3)": 2,
        SCRUBBED: 3,
        "city": "Oslo",
    }
    assert value["structuredContent"][TOKEN] == 1  # the caller's value is left as it was


def test_json_strings_lists_and_numbers_are_scrubbed_at_any_depth():
    scrubber = Scrubber(["123456789012345"])
    value = {"a": [{"b": "pin 123456789012345"}, 123456789012345, 1234, True, None]}
    assert scrubber.json(value) == {"a": [{"b": f"pin {SCRUBBED}"}, SCRUBBED, 1234, True, None]}


def test_json_finds_a_credential_holding_characters_json_escapes():
    secret = 'quote"back\\slash-0123456789'
    assert Scrubber([secret]).json({"t": f"x {secret[2:20]} y"}) == {"t": f"x {SCRUBBED} y"}


def test_json_without_a_credential_is_returned_as_it_is():
    value = {"content": [{"type": "text", "text": "Bearer is a word"}], "isError": False}
    assert Scrubber([HEADER, TOKEN]).json(value) is value
    assert Scrubber([]).json(value) is value and Scrubber([""]).text("x") == "x"


# -- the fast reading agrees with the plain one --------------------------------------------------


def plainly_scrubbed(text: str, secrets: list[str]) -> str:
    """The rule read character by character: mark what each whole value and each window of
    ``RUN`` characters of a long value covers, then replace each covered stretch (white
    space at its edges left out)."""
    covered = [False] * len(text)
    for secret in filter(None, secrets):
        pieces = [secret] if len(secret) < RUN else [
            secret[i : i + RUN] for i in range(len(secret) - RUN + 1)
        ]  # fmt: skip
        for piece in pieces:
            for at in range(len(text) - len(piece) + 1):
                if text.startswith(piece, at):
                    covered[at : at + len(piece)] = [True] * len(piece)
    out, at = [], 0
    while at < len(text):
        if not covered[at]:
            out.append(text[at])
            at += 1
            continue
        end = at
        while end < len(text) and covered[end]:
            end += 1
        stretch = text[at:end]
        core = stretch.strip()
        if core:
            lead = len(stretch) - len(stretch.lstrip())
            out.append(stretch[:lead] + SCRUBBED + stretch[lead + len(core) :])
        else:
            out.append(stretch)
        at = end
    return "".join(out)


# Values of few letters repeat pieces of themselves; of many, look like real credentials.
SECRET = st.text(alphabet="abAB01 -_", min_size=1, max_size=30) | st.text(
    alphabet=string.ascii_letters + string.digits + "-_", min_size=RUN, max_size=48
)
NOISE = st.text(alphabet="abAB01 -_xy", max_size=8)


@st.composite
def texts_with_pieces(draw):
    """Credential values, and a text of noise and pieces of them (whole, cut, repeated, with a
    character changed)."""
    secrets = draw(st.lists(SECRET, min_size=1, max_size=3))
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        parts.append(draw(NOISE))
        secret = draw(st.sampled_from(secrets))
        start = draw(st.integers(0, len(secret)))
        length = draw(st.integers(0, len(secret)) | st.integers(RUN - 1, RUN + 1))
        piece = secret[start : start + length]
        if piece and draw(st.booleans()):  # one character changed: two stretches, one line-up
            at = draw(st.integers(0, len(piece) - 1))
            piece = piece[:at] + "#" + piece[at + 1 :]
        parts.append(piece)
    return secrets, "".join(parts)


@settings(max_examples=300)
@given(texts_with_pieces())
def test_text_follows_the_rule_read_plainly(case):
    secrets, text = case
    assert Scrubber(secrets).text(text) == plainly_scrubbed(text, secrets)


def shaped(place: str, text: str):
    return {"key": {text: True}, "value": {"k": [text]}, "beside": {"n": None, "k": text}}[place]


@settings(max_examples=300)
@given(texts_with_pieces(), st.sampled_from(["key", "value", "beside"]))
def test_json_scrubs_keys_and_values_as_text_does(case, place):
    secrets, text = case
    expected = shaped(place, plainly_scrubbed(text, secrets))
    assert Scrubber(secrets).json(shaped(place, text)) == expected
