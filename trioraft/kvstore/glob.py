"""Redis glob patterns on byte strings (KEYS, SCAN MATCH).

Rules, as Redis's and Valkey's matcher applies them (case-sensitive, byte by byte):

- `*` matches any run of bytes, `?` any one byte, any other byte itself.
- `\\x` matches the byte `x` literally; a `\\` that ends the pattern matches a `\\`.
- `[...]` matches one byte from a set: single bytes, ranges `a-z` (the ends may come in
  either order), `\\x` for a literal `x`. `[^...]` matches one byte outside the set.
  `]` right after `[` (or `[^`) closes an empty set: `[]` never matches, `[^]` matches any
  byte. A `-` that cannot start a range is a plain byte (`[a-]` is the range `a`..`]`,
  because the closing bracket is read as the end of the range, exactly as Redis does).
- A `[` that is never closed takes the rest of the pattern as its set: `[abc` matches one
  of `a`, `b`, `c`; `[` alone matches nothing; `[^` matches any one byte.
- The empty string matches only the empty pattern (Redis's matcher never reports a match
  for an empty string otherwise, so even `*` does not match it; KEYS and SCAN treat the
  pattern `*` specially, and the store does the same).

Cost: O(len(pattern) * len(string)) at worst, whatever the pattern; nothing blows up
exponentially. A pattern without special bytes is compared for equality. Patterns up to
`REGEX_MAX_PATTERN` bytes become a compiled `re` pattern, cached: split at the stars into
fixed-length segments, each segment between two stars is searched at its leftmost
occurrence inside an atomic group, never revisited (a later occurrence can never do
better). Longer patterns, too slow to compile, are matched by a two-pointer walk over the
parsed pattern that, on a mismatch, resumes just after the latest star, after a length
check that rejects most strings at once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Final, TypeAlias

__all__ = ["REGEX_MAX_PATTERN", "Atom", "Walker", "compile_pattern", "is_literal", "match", "parse"]

#: One element of a parsed pattern: `None` for a star, else the set of bytes that the
#: element matches (it always consumes exactly one byte).
Atom: TypeAlias = "frozenset[int] | None"

#: the longest pattern turned into a regular expression (compiling costs ~30 us per byte)
REGEX_MAX_PATTERN: Final = 1024

_ANY_BYTE: Final = frozenset(range(256))
_SINGLE: Final = tuple(frozenset((byte,)) for byte in range(256))
_SPECIAL: Final = frozenset(b"*?[\\")
_LITERAL_RUN: Final = re.compile(rb"[^*?\[\\]+")


def parse(pattern: bytes) -> list[Atom]:
    """Split `pattern` into atoms, reading brackets and escapes the way Redis does."""
    atoms: list[Atom] = []
    end = len(pattern)
    i = 0
    while i < end:
        run = _LITERAL_RUN.match(pattern, i)
        if run is not None:
            atoms.extend([_SINGLE[byte] for byte in run.group()])
            i = run.end()
            continue
        c = pattern[i]
        if c == 0x2A:  # '*'
            atoms.append(None)
            i += 1
        elif c == 0x3F:  # '?'
            atoms.append(_ANY_BYTE)
            i += 1
        elif c == 0x5B:  # '['
            members, i = _parse_set(pattern, i + 1)
            atoms.append(members)
        elif end - i >= 2:  # '\' escaping the next byte
            atoms.append(_SINGLE[pattern[i + 1]])
            i += 2
        else:  # '\' ending the pattern
            atoms.append(_SINGLE[c])
            i += 1
    return atoms


def _parse_set(pattern: bytes, i: int) -> tuple[frozenset[int], int]:
    """Parse a bracket body starting just after `[`; return the set and the next index."""
    end = len(pattern)
    negate = i < end and pattern[i] == 0x5E  # '^'
    if negate:
        i += 1
    members: set[int] = set()
    while i < end:
        c = pattern[i]
        if c == 0x5C and end - i >= 2:  # '\' escaping the next byte
            members.add(pattern[i + 1])
            i += 2
        elif c == 0x5D:  # ']'
            i += 1
            break
        elif end - i >= 3 and pattern[i + 1] == 0x2D:  # 'x-y'
            low, high = sorted((c, pattern[i + 2]))
            members.update(range(low, high + 1))
            i += 3
        else:
            members.add(c)
            i += 1
    if negate:
        return _ANY_BYTE.difference(members), i
    return frozenset(members), i


def _atom_regex(atom: frozenset[int]) -> bytes:
    if len(atom) == 256:
        return b"."
    if not atom:
        return b"(?!)"
    if len(atom) == 1:
        return re.escape(bytes(atom))
    parts: list[bytes] = []
    ordered = sorted(atom)
    start = prev = ordered[0]
    for c in [*ordered[1:], -1]:
        if c == prev + 1:
            prev = c
            continue
        if start == prev:
            parts.append(b"\\x%02x" % start)
        else:
            parts.append(b"\\x%02x-\\x%02x" % (start, prev))
        start = prev = c
    return b"[" + b"".join(parts) + b"]"


def _to_regex(atoms: list[Atom]) -> bytes:
    segments: list[bytes] = [b""]
    for atom in atoms:
        if atom is None:
            segments.append(b"")
        else:
            segments[-1] += _atom_regex(atom)
    if len(segments) == 1:
        return segments[0]
    first, *middle, last = segments
    # Each middle segment at its leftmost occurrence, never revisited; the last one must
    # end the string.
    return first + b"".join(b"(?>.*?" + seg + b")" for seg in middle if seg) + b".*" + last


@functools.lru_cache(maxsize=256)
def _compile_regex(pattern: bytes) -> Callable[[bytes], bool]:
    fullmatch = re.compile(_to_regex(parse(pattern)), re.DOTALL).fullmatch

    def matches(string: bytes) -> bool:
        # The pattern holds a special byte, so it is not empty: it never matches b"".
        return bool(string) and fullmatch(string) is not None

    return matches


class Walker:
    """Matches strings against parsed atoms without `re` (for long patterns)."""

    __slots__ = ("_atoms", "_fixed", "_has_star")

    def __init__(self, atoms: list[Atom]) -> None:
        self._atoms = atoms
        #: how many bytes the atoms other than stars consume
        self._fixed = sum(1 for atom in atoms if atom is not None)
        self._has_star = self._fixed < len(atoms)

    def __call__(self, string: bytes) -> bool:
        if not string:
            return not self._atoms
        if len(string) < self._fixed or (not self._has_star and len(string) != self._fixed):
            return False
        atoms = self._atoms
        count = len(atoms)
        p = i = 0
        star = -1  # the latest star passed, and where the string stood just after it
        resume = 0
        while i < len(string):
            if p < count:
                atom = atoms[p]
                if atom is None:
                    star, resume = p, i
                    p += 1
                    continue
                if string[i] in atom:
                    p += 1
                    i += 1
                    continue
            if star < 0:
                return False
            # let the latest star take one more byte and try again from there
            resume += 1
            p, i = star + 1, resume
        while p < count and atoms[p] is None:
            p += 1
        return p == count


def is_literal(pattern: bytes) -> bool:
    """Whether `pattern` has no special byte, so that it matches only itself."""
    return _SPECIAL.isdisjoint(pattern)


def compile_pattern(pattern: bytes) -> Callable[[bytes], bool]:
    """Return a predicate telling whether a byte string matches `pattern`."""
    if is_literal(pattern):
        return pattern.__eq__
    if len(pattern) <= REGEX_MAX_PATTERN:
        return _compile_regex(pattern)
    return Walker(parse(pattern))


def match(pattern: bytes, string: bytes) -> bool:
    """Whether `string` matches the Redis glob `pattern`."""
    return compile_pattern(pattern)(string)
