"""The REDCap name <-> path component mapping: reversible, always a valid component, collision-free."""

from __future__ import annotations

import random

import pytest

from redcapfs.names import (
    EMPTY_TOKEN,
    NAME_MAX,
    Resolver,
    decode,
    encode,
    is_canonical,
    is_shortened,
    is_valid_component,
    name_hash,
)

LONG_ASCII = "a" * 300 + ".pdf"
LONG_UNICODE = "Überweisungsträger-" + "é😀" * 60 + ".docx"  # 19 + 360 + 5 bytes

# (name from REDCap, component on disk); None = shortened, checked separately.
TABLE = [
    ("report.pdf", "report.pdf"),
    ("/", "%2F"),
    ("a/b", "a%2Fb"),
    ("../x", "..%2Fx"),
    ("x\0y", "x%00y"),
    ("line\nbreak", "line%0Abreak"),
    ("tab\there", "tab%09here"),
    ("del\x7f", "del%7F"),
    ("", EMPTY_TOKEN),
    (".", "%2E"),
    ("..", "%2E%2E"),
    ("...", "..."),
    (".hidden", ".hidden"),
    ("%", "%"),
    ("50%off.pdf", "50%off.pdf"),
    ("100%", "100%"),
    ("%2F", "%252F"),
    ("%25", "%2525"),
    ("%2f", "%2f"),
    ("%41", "%41"),
    ("%2E", "%252E"),
    ("%2E%2E", "%252E%2E"),
    ("%EMPTY", "%25EMPTY"),
    ("%~0123456789", "%25~0123456789"),
    ("a;b\"c.txt", "a;b\"c.txt"),
    ('name="x.pdf"; charset=UTF-8', 'name="x.pdf"; charset=UTF-8'),
    ("résumé 2024.pdf", "résumé 2024.pdf"),
    ("lone\ud800", "lone%uD800"),
    ("escaped\udcff", "escaped%uDCFF"),
    ("%uD800", "%25uD800"),
    ("ABC123-X01B-M01", "ABC123-X01B-M01"),
    (LONG_ASCII, None),
    (LONG_UNICODE, None),
]

NASTY = (
    ["%", "/", "\0", "\n", "\r", "\x1b", "\x7f", ".", "~", ";", '"', "'", "\\", " "]
    + list("0123456789ABCDEFabcdefuDE")
    + ["é", "ß", "😀", "\u200b", "\u0301", "\ufeff", "\ud800", "\udc80", "\udfff"]
    + ["%2F", "%25", "%00", "%2E", "%EMPTY", "%uDC80", "%~", "%~0123456789"]
)


def random_names(count: int, seed: int = 20240601) -> list[str]:
    """Names over a nasty alphabet, short ones mostly, some far over 255 bytes."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        length = rng.choice([0, 1, 2, 3, 5, 8, 20, 90, 200])
        out.append("".join(rng.choice(NASTY) for _ in range(length)))
    return out


RANDOM = random_names(5000)


@pytest.mark.parametrize("name, component", [t for t in TABLE if t[1] is not None])
def test_table(name: str, component: str) -> None:
    assert encode(name) == component
    assert decode(component) == name
    assert is_valid_component(component)
    assert is_canonical(component)


def test_every_encoding_is_a_valid_component() -> None:
    for name in [t[0] for t in TABLE] + RANDOM:
        component = encode(name)
        assert is_valid_component(component), name
        assert "/" not in component and "\0" not in component
        assert component not in ("", ".", "..")
        assert len(component.encode("utf-8")) <= NAME_MAX
        assert not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in component)


def test_round_trip_random() -> None:
    for name in RANDOM:
        component = encode(name)
        if is_shortened(component):
            assert len(encode_unshortened_bytes(name)) > NAME_MAX
            assert Resolver([name]).resolve(component) == name
        else:
            assert decode(component) == name, (name, component)
            # Stability: a decoded component encodes back to a fixed point.
            assert encode(decode(component)) == component


def encode_unshortened_bytes(name: str) -> bytes:
    """What encode would give without the 255-byte limit (via a name too short to cut)."""
    from redcapfs import names

    return "".join(names._pieces(name)).encode("utf-8")


@pytest.mark.parametrize("component", ["50%off", "%", "%%", "%2", "%2G", "%2f", "%u", "%uD7FF", "~", "x%"])
def test_user_typed_percent_is_literal(component: str) -> None:
    assert decode(component) == component
    assert encode(decode(component)) == component


def test_decode_any_component_is_stable() -> None:
    """encode(decode(c)) is a fixed point, for any component a user may type.

    Shortened results are the exception by design: they name existing files via
    Resolver and are never decoded into a name.
    """
    for component in RANDOM + ["%25x", "%2E.", "a%2Eb", "%uDC80", "\udc80x", "%2e", "%%25"]:
        once = encode(decode(component))
        if not is_shortened(once):
            assert encode(decode(once)) == once, component


def test_non_canonical_components() -> None:
    assert not is_canonical("%25x")  # decodes to "%x", which is listed as "%x"
    assert not is_canonical("\udc80x")  # not UTF-8: cannot be uploaded by that name
    assert not is_canonical(encode(LONG_ASCII))  # shortened forms name existing files only


def test_lone_surrogates_do_not_crash() -> None:
    for component in ["\udc80", "a\udcff.pdf", "\ud800\udc00"]:
        decode(component)
        assert not is_valid_component(component)
        assert decode(encode(component)) == component


@pytest.mark.parametrize("name", [LONG_ASCII, LONG_UNICODE, "x" * 256, "😀" * 64, "/" * 100, "%2F" * 100])
def test_shortened_names(name: str) -> None:
    component = encode(name)
    assert is_shortened(component)
    assert len(component.encode("utf-8")) <= NAME_MAX
    assert "%~" + name_hash(name) in component
    resolver = Resolver(["short.pdf", name])
    assert resolver.resolve(component) == name


def test_shortened_keeps_prefix_and_short_extension() -> None:
    component = encode(LONG_ASCII)
    assert component.startswith("a" * 200)
    assert component.endswith("%~" + name_hash(LONG_ASCII) + ".pdf")
    assert len(component.encode()) == NAME_MAX
    long_ext = "b" * 10 + "." + "c" * 300
    assert encode(long_ext).endswith("%~" + name_hash(long_ext))


def test_shortened_cuts_at_character_and_escape_boundaries() -> None:
    for name in ["é" * 200, "😀" * 100, "a" + "\n" * 200, "a" + "\ud800" * 100]:
        component = encode(name)
        component.encode("utf-8")  # whole characters only
        prefix = component.split("%~")[0]
        assert decode(prefix) == name[: len(decode(prefix))]


def test_no_unshortened_component_looks_shortened() -> None:
    for name in RANDOM + [t[0] for t in TABLE]:
        component = encode(name)
        assert is_shortened(component) == (len(encode_unshortened_bytes(name)) > NAME_MAX)


def test_no_collisions_between_distinct_names() -> None:
    names = set(RANDOM) | {t[0] for t in TABLE}
    # Long names sharing a prefix and extension, and a short name spelling a long one's component.
    names |= {"p" * 300 + str(i) + ".pdf" for i in range(200)}
    names.add(encode("p" * 300 + "0.pdf"))
    names.add(decode(encode("p" * 300 + "0.pdf")))
    components = [encode(name) for name in names]
    assert len(set(components)) == len(names)
    resolver = Resolver(names)
    assert len(resolver) == len(names)
    for name in names:
        assert resolver.resolve(encode(name)) == name


def test_resolver_lists_in_given_order() -> None:
    resolver = Resolver(["b/1", "a", ""])
    assert resolver.components() == ["b%2F1", "a", EMPTY_TOKEN]
    assert "a" in resolver and "b/1" not in resolver
    assert list(resolver) == resolver.components()
    assert resolver.resolve("missing") is None


@pytest.mark.parametrize(
    "component, valid",
    [("a", True), ("", False), (".", False), ("..", False), ("a/b", False), ("a\0", False),
     ("x" * 255, True), ("x" * 256, False), ("é" * 128, False), ("é" * 127, True), ("\udc80", False)],
)
def test_is_valid_component(component: str, valid: bool) -> None:
    assert is_valid_component(component) is valid
