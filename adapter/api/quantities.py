"""Kubernetes ``resource.Quantity`` strings, emitted exactly as apimachinery does.

The HPA reads ``Quantity.MilliValue()`` from every value we serve, so the string must parse in
Go and should be the canonical spelling Go servers write ("1500m", "2k", "1Gi"). The rules
(apimachinery ``quantity.go`` / ``amount.go``): no precision is lost beyond the nano unit, no
fractional digits, the largest suffix that keeps the mantissa an integer, non-zero values are
rounded *away from zero* to 1n on parse, and zero is always "0".

``sanitize`` is the one place where a float from a backend becomes a number we are willing to
serve; its policy (documented in docs/adapter.md) is decided here and nowhere else.
"""

from __future__ import annotations

import functools
import math
import re
from decimal import ROUND_UP, Decimal, InvalidOperation
from enum import Enum
from typing import Final, Literal

Format = Literal["DecimalSI", "BinarySI", "DecimalExponent"]

_DECIMAL_SUFFIX: Final = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_PARSE_DECIMAL: Final = {v: k for k, v in _DECIMAL_SUFFIX.items()}
_BINARY_SUFFIX: Final = {10: "Ki", 20: "Mi", 30: "Gi", 40: "Ti", 50: "Pi", 60: "Ei"}
_PARSE_BINARY: Final = {v: k for k, v in _BINARY_SUFFIX.items()}
_NANO: Final = Decimal("1e-9")
_QUANTITY_RE: Final = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")

#: The largest value whose ``MilliValue()`` still fits an int64 in Go (MaxInt64 / 1000).
MAX_SERVABLE: Final = Decimal(9_223_372_036_854_775)


class QuantityError(ValueError):
    """A string that is not a Kubernetes quantity."""


class Rejected(Enum):
    """Why ``sanitize`` refused a backend value; the value is then not served at all."""

    NAN = "nan"
    INFINITE = "infinite"


def _round_nano(x: Decimal) -> Decimal:
    """Round away from zero to the nano unit, like ``inf.RoundUp`` in ``ParseQuantity``."""
    return x.quantize(_NANO, rounding=ROUND_UP) if x != 0 else Decimal(0)


def _mantissa_exponent(x: Decimal) -> tuple[int, int]:
    """Integer mantissa and base-10 exponent of |x| with trailing zeros stripped."""
    t = abs(x).normalize().as_tuple()
    mantissa = int("".join(map(str, t.digits)))
    exponent = int(t.exponent)
    while mantissa and mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    return mantissa, exponent


def _decimal_form(x: Decimal, *, exponent_form: bool) -> str:
    sign = "-" if x < 0 else ""
    mantissa, exponent = _mantissa_exponent(x)
    rem = exponent % 3  # Python's % is non-negative, matching Go's {1,-2} and {2,-1} cases
    if rem == 1:
        mantissa, exponent = mantissa * 10, exponent - 1
    elif rem == 2:
        mantissa, exponent = mantissa * 100, exponent - 2
    if exponent_form:
        return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
    while exponent > 18:  # beyond "E": keep the mantissa integral, like Go's bigger amounts
        mantissa, exponent = mantissa * 1000, exponent - 3
    return f"{sign}{mantissa}{_DECIMAL_SUFFIX[exponent]}"


def _binary_form(x: Decimal) -> str | None:
    """``1Gi``-style spelling, or None where Go falls back to DecimalSI."""
    if abs(x) < 1024 or x != x.to_integral_value():
        return None
    sign = "-" if x < 0 else ""
    n = int(abs(x))
    power = 0
    while power < 60 and n % 1024 == 0:
        n //= 1024
        power += 10
    return f"{sign}{n}{_BINARY_SUFFIX.get(power, '')}"


def format_quantity(value: Decimal | int | str, fmt: Format = "DecimalSI") -> str:
    """Canonical Quantity string for an exact number (rounded away from zero to 1n)."""
    x = _round_nano(Decimal(value))
    if x == 0:
        return "0"
    if fmt == "BinarySI":
        binary = _binary_form(x)
        if binary is not None:
            return binary
    return _decimal_form(x, exponent_form=fmt == "DecimalExponent")


def parse_quantity(text: str) -> tuple[Decimal, Format]:
    """Parse a quantity string into its exact value and the format Go would keep."""
    m = _QUANTITY_RE.match(text.strip())
    if m is None:
        raise QuantityError(f"not a quantity: {text[:64]!r}")
    try:
        number = Decimal(m.group(1))
    except InvalidOperation as e:  # pragma: no cover - the regex admits only valid numbers
        raise QuantityError(f"not a quantity: {text[:64]!r}") from e
    suffix = m.group(2) or ""
    if suffix in _PARSE_BINARY:
        return _round_nano(number * (2 ** _PARSE_BINARY[suffix])), "BinarySI"
    if suffix[:1] in ("e", "E"):
        return _round_nano(number.scaleb(int(suffix[1:]))), "DecimalExponent"
    return _round_nano(number.scaleb(_PARSE_DECIMAL[suffix])), "DecimalSI"


def canonicalize(text: str) -> str:
    """Re-emit a quantity string the way Go's ``Quantity.String()`` does after parsing it."""
    value, fmt = parse_quantity(text)
    return format_quantity(value, fmt)


def sanitize(value: float) -> Decimal | Rejected:
    """The served-value policy, decided once.

    - NaN and +/-Inf are not numbers the HPA can act on: rejected (the series is dropped and
      counted; a metric whose every series is dropped answers like an empty result).
    - Negative values are clamped to 0: HPA targets must be positive, and a negative
      utilisation or rate (counter reset artefacts, forecast undershoot) means "no load".
    - Values above ``MAX_SERVABLE`` are capped there so Go's ``MilliValue()`` cannot overflow.
    """
    if math.isnan(value):
        return Rejected.NAN
    if math.isinf(value):
        return Rejected.INFINITE
    if value <= 0:
        return Decimal(0)
    exact = Decimal(repr(value))
    return min(exact, MAX_SERVABLE)


@functools.lru_cache(maxsize=8192)
def float_quantity(value: float) -> str | None:
    """Sanitize and format a backend float; None when the policy rejects it."""
    clean = sanitize(value)
    return None if isinstance(clean, Rejected) else format_quantity(clean)
