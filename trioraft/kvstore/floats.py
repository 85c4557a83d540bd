"""INCRBYFLOAT's arithmetic, as Redis does it on x86-64, computed exactly.

Redis parses the value and the increment with C's `strtold`, adds them as `long double`
(the x87 80-bit format: a 64-bit significand, exponents down to 2**-16382, subnormals
down to 2**-16445) and writes the sum with `%.17Lf`, trailing zeros and a trailing point
removed ("-0" written "0"). Doing the same with Python floats (53-bit) would answer
10.59999999999999964 where Redis answers 10.6. So each value here is an exact `Fraction`
rounded to that format (to nearest, ties to even, as the FPU does by default), and the
text is the exact decimal expansion rounded to 17 places (ties to even, as glibc's printf
does). Being exact, it gives the same answer on every machine, which a state machine
needs; Redis itself answers differently where `long double` is another format.

What `parse` accepts is what Redis's string2ld does: all of `strtold`'s syntax (decimal,
hexadecimal with a binary exponent, "inf" and "infinity" in any case, a sign) with
nothing before or after it (no blank, no NUL), not NaN, not a value out of range (an
overflow, or a non-zero value that rounds to 0), shorter than 5 KiB.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Final, TypeAlias

import attrs

__all__ = ["ZERO", "Infinite", "Value", "add", "format_value", "parse"]

#: bits of the x87 extended significand, and its smallest exponents
_PRECISION: Final = 64
_MIN_NORMAL_EXPONENT: Final = -16382
_MIN_QUANTUM_EXPONENT: Final = _MIN_NORMAL_EXPONENT - (_PRECISION - 1)
#: the first power of two past the largest finite value
_OVERFLOW: Final = Fraction(2) ** 16384
#: Redis's buffer for a long double's text (MAX_LONG_DOUBLE_CHARS)
_MAX_CHARS: Final = 5 * 1024
#: a decimal exponent past which any digits overflow (or, negative, round to 0); also
#: the binary exponent's bound, well past the range of either
_EXPONENT_LIMIT: Final = 30_000
#: digits Python turns into an int (or back) in one go (its limit is 4300)
_CHUNK_DIGITS: Final = 4000

_DECIMAL: Final = re.compile(rb"([+-]?)([0-9]*)(?:\.([0-9]*))?(?:[eE]([+-]?[0-9]+))?")
_HEX: Final = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]+))?")
_INFINITY: Final = re.compile(rb"([+-]?)(?:inf|infinity)", re.IGNORECASE)


@attrs.frozen
class Infinite:
    """An infinite value: what a sum or a spelled "inf" may be."""

    negative: bool


#: a value: exact, or infinite
Value: TypeAlias = "Fraction | Infinite"
#: what a missing key counts as
ZERO: Final = Fraction(0)


def _round(exact: Fraction) -> Value:
    """`exact` rounded to the nearest x87 extended value (ties to even)."""
    if exact == 0:
        return Fraction(0)
    magnitude = abs(exact)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    quantum = Fraction(2) ** max(exponent - (_PRECISION - 1), _MIN_QUANTUM_EXPONENT)
    rounded = round(magnitude / quantum) * quantum
    if rounded >= _OVERFLOW:
        return Infinite(exact < 0)
    return -rounded if exact < 0 else rounded


def _int(digits: bytes, base: int) -> int:
    """The integer `digits` spell (any length)."""
    value = 0
    for start in range(0, len(digits), _CHUNK_DIGITS):
        chunk = digits[start : start + _CHUNK_DIGITS]
        value = value * base ** len(chunk) + int(chunk, base)
    return value


def _exponent(spelled: bytes | None) -> int:
    """An exponent as spelled, clamped to +-`_EXPONENT_LIMIT` (past it, the value is out
    of range whatever its digits)."""
    if not spelled:
        return 0
    digits = spelled.lstrip(b"+-").lstrip(b"0")
    magnitude = _EXPONENT_LIMIT if len(digits) > 6 else min(int(digits or b"0"), _EXPONENT_LIMIT)
    return -magnitude if spelled.startswith(b"-") else magnitude


def _exact(text: bytes) -> Fraction | None:
    """The exact number `text` spells in strtold's decimal or hexadecimal syntax, or None.
    One far out of range comes as a stand-in just as far out (rounding decides)."""
    hexadecimal = _HEX.fullmatch(text)
    spelled = hexadecimal or _DECIMAL.fullmatch(text)
    if spelled is None:
        return None
    sign, whole, fraction, exponent = spelled.groups()
    fraction = fraction or b""
    if not whole + fraction:
        return None
    # value = significant * base ** shift, with hex digits worth 4 binary places each
    base, radix, digit_width = (2, 16, 4) if hexadecimal else (10, 10, 1)
    shift = _exponent(exponent) - digit_width * len(fraction)
    significant = (whole + fraction).lstrip(b"0")
    if not significant:
        return Fraction(0)
    leading = digit_width * (len(significant) - 1) + shift  # the leading digit's weight
    if abs(leading) > _EXPONENT_LIMIT:
        value = _OVERFLOW if leading > 0 else 1 / _OVERFLOW**2
    else:
        value = _int(significant, radix) * Fraction(base) ** shift
    return -value if sign == b"-" else value


def parse(text: bytes) -> Value | None:
    """The value `text` spells as Redis reads one (string2ld), or None when it does not."""
    if len(text) >= _MAX_CHARS:
        return None
    infinity = _INFINITY.fullmatch(text)
    if infinity is not None:
        return Infinite(infinity.group(1) == b"-")
    exact = _exact(text)
    if exact is None:
        return None
    rounded = _round(exact)
    if isinstance(rounded, Infinite) or (rounded == 0 and exact != 0):
        return None  # out of range: strtold's overflow, or underflow to zero (ERANGE)
    return rounded


def add(left: Value, right: Value) -> Value | None:
    """`left + right` rounded as the FPU does; None for NaN (infinities of both signs)."""
    if isinstance(left, Infinite) or isinstance(right, Infinite):
        signs = {value.negative for value in (left, right) if isinstance(value, Infinite)}
        return Infinite(signs.pop()) if len(signs) == 1 else None
    return _round(left + right)


def _decimal_text(number: int) -> bytes:
    """The decimal digits of the natural `number` (any size)."""
    if number < 10**_CHUNK_DIGITS:
        return b"%d" % number
    high, low = divmod(number, 10**_CHUNK_DIGITS)
    return _decimal_text(high) + b"%0*d" % (_CHUNK_DIGITS, low)


def format_value(value: Fraction) -> bytes:
    """`value` as Redis writes a long double for people: `%.17Lf`, then trailing zeros
    and a trailing point removed, and "-0" written "0"."""
    whole, fraction = divmod(round(abs(value) * 10**17), 10**17)  # round: ties to even
    text = (_decimal_text(whole) + b".%017d" % fraction).rstrip(b"0").rstrip(b".")
    return b"-" + text if value < 0 and text != b"0" else text
