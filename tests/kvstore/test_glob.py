"""Redis glob matching (trioraft.kvstore.glob), as KEYS, SCAN's MATCH and the ACL patterns
use it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioraft.kvstore import glob


@pytest.mark.parametrize(
    ("pattern", "string", "expected"),
    [
        (b"*", b"abc", True),
        (b"*", b"", False),
        (b"**", b"", False),
        (b"", b"", True),
        (b"", b"a", False),
        (b"a*", b"a", True),
        (b"*a", b"ba", True),
        (b"ab*", b"ab", True),
        (b"a*b*c", b"aXbYc", True),
        (b"a*b*c", b"acb", False),
        (b"*a*ba", b"aba", True),
        (b"*ab*b?", b"ababa", True),
        (b"*ab*b?", b"abab", False),
        (b"a*b", b"ab", True),
        (b"a*b", b"abc", False),
        (b"?", b"\n", True),
        (b"?", b"", False),
        (b"??", b"a", False),
        (b"h?llo", b"hello", True),
        (b"h[ae]llo", b"hallo", True),
        (b"h[ae]llo", b"hillo", False),
        (b"h[^e]llo", b"hello", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[a-b]llo", b"hbllo", True),
        (b"[z-a]", b"m", True),
        (b"[a-c-e]", b"-", True),
        (b"[a-c-e]", b"d", False),
        (b"[-a]", b"-", True),
        (b"[a\\-z]", b"-", True),
        (b"[a\\-z]", b"b", False),
        (b"[\\]]", b"]", True),
        (b"[\\", b"\\", True),
        # the closing bracket right after '[' ends an empty set
        (b"[]a]", b"]a]", False),
        (b"[]a]", b"xa]", False),
        (b"[^]a]", b"xa]", True),
        (b"[^]", b"]", True),
        # "a-]" is the range from ']' to 'a'; the set then runs to the end of the pattern
        (b"[a-]", b"_", True),
        (b"[a-]", b"]", True),
        (b"[a-]", b"-", False),
        (b"[a-]x", b"x", True),
        (b"[a-]x", b"_x", False),
        # an unclosed '[' takes the rest of the pattern
        (b"[abc", b"b", True),
        (b"[abc", b"d", False),
        (b"[abc", b"ab", False),
        (b"[", b"[", False),
        (b"h[", b"h[", False),
        (b"[^", b"x", True),
        (b"[^", b"xy", False),
        # escapes
        (b"\\*", b"*", True),
        (b"\\*", b"a", False),
        (b"a\\*b", b"a*b", True),
        (b"a\\*b", b"axb", False),
        (b"\\a", b"a", True),
        (b"a\\", b"a\\", True),
        (b"\\?", b"?", True),
        (b"\\[a]", b"[a]", True),
        # bytes, not text
        (b"\x00*\xff", b"\x00abc\xff", True),
        (b"[\x00-\x10]", b"\x05", True),
        (b"[^\x00-\x7f]", b"\xe9", True),
        (b"?", b"\xe9", True),
        (b"A*", b"abc", False),
    ],
)
def test_glob_cases(pattern: bytes, string: bytes, expected: bool) -> None:
    assert glob.match(pattern, string) is expected


def test_glob_parse() -> None:
    assert glob.parse(b"a*?") == [frozenset(b"a"), None, frozenset(range(256))]
    assert glob.parse(b"[^b-y]") == [frozenset((*range(0x62), *range(0x7A, 256)))]
    assert glob.parse(b"[a-") == [frozenset(b"a-")]


def test_glob_has_no_exponential_blowup() -> None:
    subject = b"a" * 50_000
    started = time.perf_counter()
    assert not glob.match(b"a*a*a*a*a*a*a*a*a*a*b", subject)
    assert not glob.match(b"*a*a*a*a*a*a*a*a*a*a*b*", subject)
    assert not glob.match(b"*?*?*?*?*?*?*?*?*[b]", subject)
    assert glob.match(b"*a*a*a*a*a*a*a*a*a*a", subject)
    assert time.perf_counter() - started < 1.0


def reference_match(atoms: list[glob.Atom], string: bytes) -> bool:
    """Dynamic programming over prefixes; Redis never matches the empty string otherwise."""
    if not string:
        return not atoms
    matched = [True] + [False] * len(string)
    for atom in atoms:
        if atom is None:
            reached = False
            for j, ok in enumerate(matched):
                reached = reached or ok
                matched[j] = reached
        else:
            matched = [False] + [matched[j] and byte in atom for j, byte in enumerate(string)]
    return matched[-1]


glob_bytes = st.sampled_from(b"ab*?[]^-\\")
subject_bytes = st.lists(st.sampled_from(b"ab]-^\\*["), max_size=3).map(bytes)


@st.composite
def pattern_and_string(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A pattern, and a string drawn to match it (stars take a few bytes each), then
    perhaps damaged; or an unrelated string."""
    pattern = draw(st.binary(max_size=10) | st.lists(glob_bytes, max_size=10).map(bytes))
    if draw(st.booleans()):
        return pattern, draw(st.lists(subject_bytes, max_size=3).map(b"".join))
    string = bytearray()
    for atom in glob.parse(pattern):
        if atom is None:
            string += draw(subject_bytes)
        elif atom:
            string.append(draw(st.sampled_from(sorted(atom))))
    if string and draw(st.booleans()):
        string[draw(st.integers(0, len(string) - 1))] = draw(st.integers(0, 255))
    return pattern, bytes(string)


@settings(max_examples=500)
@given(pattern_and_string())
def test_glob_agrees_with_reference(case: tuple[bytes, bytes]) -> None:
    pattern, string = case
    atoms = glob.parse(pattern)
    expected = reference_match(atoms, string)
    assert glob.match(pattern, string) is expected
    assert glob.Walker(atoms)(string) is expected


def test_long_patterns_are_walked() -> None:
    pattern = b"*" + b"a?[bc]*" * 200 + b"\\"
    assert len(pattern) > glob.REGEX_MAX_PATTERN
    matcher = glob.compile_pattern(pattern)
    assert isinstance(matcher, glob.Walker)
    assert matcher(b"x" + b"axb" * 200 + b"\\")
    assert matcher(b"axc" * 100 + b"--" + b"aac" * 100 + b"yy\\")
    assert not matcher(b"axb" * 200)
    assert not matcher(b"axb" * 199 + b"\\")
    assert not matcher(b"")
    literal = b"k" * 2000
    assert glob.match(literal, literal) and not glob.match(literal, literal + b"k")


def test_long_patterns_have_no_blowup() -> None:
    subject = b"a" * 3000
    started = time.perf_counter()
    assert not glob.match(b"a*" * 600 + b"b", subject)
    assert glob.match(b"*a" * 600, subject)
    assert time.perf_counter() - started < 2.0


def test_compiled_pattern_is_cached() -> None:
    matcher: Callable[[bytes], bool] = glob.compile_pattern(b"x*y")
    assert glob.compile_pattern(b"x*y") is matcher
    assert matcher(b"xzzy") and not matcher(b"xz")
