"""Exposed tool names (``services.toolnames``), over generated name sets: unique per agent by
construction, at most 64 safe characters, the same whatever order the tools come in, and no
connector can take a name of another's prefix or change another's names."""

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from mcpadmin.services import toolnames
from mcpadmin.services.toolnames import MAX_NAME, SEPARATOR, exposed_names

# Slugs as models.slug_base makes them (numbered ones included); and any text, for the rules
# that hold whatever the slugs (prefixes that overlap, as "a" and "a_" or "a__b" would).
SLUG = st.from_regex(r"[a-z0-9]{1,8}(_[a-z0-9]{1,3}){0,2}", fullmatch=True)
ANY_SLUG = SLUG | st.sampled_from(["", "a", "a_", "a__b", "b__"]) | st.text(max_size=6)
SAFE = "abcxyz_.-0123456789"
BASE_NAME = st.one_of(
    st.text(max_size=12),  # any unicode, empty included
    st.text(alphabet=SAFE, min_size=1, max_size=12),
    st.sampled_from(["a b", "a_b", "a-b", "a\tb", "a\u00a0b", "a\u200bb", "é", "e\u0301", "_"]),
    st.text(alphabet=SAFE, min_size=MAX_NAME - 12, max_size=MAX_NAME + 12),  # long
)


@st.composite
def agents(draw, slug=SLUG):
    """(tools, keep_names): several connectors' tools, with names made to collide: with
    another connector's, with another's prefixed name, with fitted names (hash suffixes) and
    numbered ones."""
    slugs = draw(st.lists(slug, min_size=1, max_size=4, unique=True))
    tools = [
        (draw(st.sampled_from(slugs)), draw(BASE_NAME)) for _ in range(draw(st.integers(1, 8)))
    ]
    for _ in range(draw(st.integers(0, 6))):
        slug, name = draw(st.sampled_from(tools))
        fitted = toolnames._fitting(f"{slug}{SEPARATOR}{name}")
        copies = [
            name,  # the same name on another connector
            f"{slug}{SEPARATOR}{name}",  # another's prefixed name
            fitted,  # another's fitted name, prefix included
            fitted[len(slug) + len(SEPARATOR) :],  # its fitted name once prefixed again
            toolnames._fitting(name),  # the name as a kept name would once have been fitted
            f"{name}_2",
            f"{fitted[len(slug) + len(SEPARATOR) :]}_2",
        ]
        tools.append((draw(st.sampled_from(slugs)), draw(st.sampled_from(copies))))
    return tools, draw(st.booleans())


@given(agents(ANY_SLUG))
def test_names_are_distinct_short_and_safe(agent):
    tools, keep = agent
    names = exposed_names(tools, keep)
    assert set(names) == set(tools)
    assert len(set(names.values())) == len(names)
    assert all(len(n) <= MAX_NAME and toolnames._SAFE.fullmatch(n) for n in names.values())


@given(agents(ANY_SLUG), st.randoms(use_true_random=False))
def test_names_do_not_depend_on_the_order_of_the_tools(agent, random):
    tools, keep = agent
    shuffled = list(tools)
    random.shuffle(shuffled)
    assert exposed_names(shuffled, keep) == exposed_names(tools, keep)


@given(agents())
def test_a_name_of_a_connectors_prefix_is_only_ever_its_own_tools(agent):
    tools, keep = agent
    prefixes = {slug + SEPARATOR for slug, _ in tools}
    for (slug, name), exposed in exposed_names(tools, keep).items():
        if keep and exposed == name:  # kept: outside every connector's prefix
            assert not any(exposed.startswith(prefix) for prefix in prefixes)
        else:
            assert exposed.startswith(slug + SEPARATOR)
            others = prefixes - {slug + SEPARATOR}
            assert not any(exposed.startswith(prefix) for prefix in others)


@given(agents())
def test_another_connectors_tools_never_change_a_prefixed_name(agent):
    tools, keep = agent
    names = exposed_names(tools, keep)
    for slug in {slug for slug, _ in tools}:
        alone = exposed_names([t for t in tools if t[0] == slug], False)
        for pair, exposed in alone.items():
            assert names[pair] in (exposed, pair[1] if keep else None)


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def test_a_kept_name_that_looks_like_a_fitted_one_cannot_take_another_tools_name():
    # The attack run's listing: a name that once was fitted to "__<digest>" when kept, and the
    # names that fitting, and numbering a collision, would give.
    tools = [("s", "é"), ("s", f"__{digest('é')}"), ("s", f"__{digest('é')}_2")]
    names = exposed_names(tools, True)
    assert len(set(names.values())) == 3
    assert names[("s", f"__{digest('é')}")] == f"__{digest('é')}"
    assert names[("s", f"__{digest('é')}_2")] == f"__{digest('é')}_2"
    assert names[("s", "é")] == f"s____{digest('s__é')}"


def test_a_second_connector_cannot_take_over_a_fitted_name_with_keep_names_on():
    long_name = "x" * 70
    fitted = exposed_names([("zeta", long_name)], True)[("zeta", long_name)]
    tools = [("zeta", long_name), ("alpha", fitted)]  # alpha sorts first, and copies the name
    names = exposed_names(tools, True)
    assert names[("zeta", long_name)] == fitted
    assert names[("alpha", fitted)].startswith("alpha__")


def test_a_numbered_name_is_one_no_tool_claims():
    # "a__x" fitted and a tool literally named like the fitted name's first numbered form.
    wanted = toolnames._fitting("a__x y")
    tools = [("a", "x y"), ("a", wanted[len("a__") :]), ("a", wanted[len("a__") :] + "_2")]
    names = exposed_names(tools, False)
    assert names[("a", wanted[len("a__") :])] == wanted  # a name needing no fitting first
    assert names[("a", wanted[len("a__") :] + "_2")] == wanted + "_2"
    assert names[("a", "x y")] == wanted + "_3"


def test_slugs_whose_prefixes_overlap_still_give_distinct_names_in_any_order():
    tools = [("a", "b__c"), ("a__b", "c")]  # both "a__b__c"; real slugs never hold "__"
    names = exposed_names(tools, False)
    assert names == exposed_names(tools[::-1], False)
    assert sorted(names.values()) == ["a__b__c", "a__b__c_2"]
