"""Golden Quantity strings from apimachinery quantity_test.go, and the value policy."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from adapter.api.quantities import (
    MAX_SERVABLE,
    QuantityError,
    Rejected,
    canonicalize,
    float_quantity,
    format_quantity,
    sanitize,
)

GOLDEN = [  # (value, format, canonical)  TestQuantityString
    ("5", "BinarySI", "5"),
    ("500e-3", "BinarySI", "500m"),
    ("1e9", "DecimalSI", "1G"),
    ("1e-3", "DecimalSI", "1m"),
    ("80e-3", "DecimalSI", "80m"),
    ("1080e-3", "DecimalSI", "1080m"),
    ("108e-2", "DecimalSI", "1080m"),
    ("3e3", "DecimalSI", "3k"),
    ("1234567e6", "DecimalSI", "1234567M"),
    ("1025", "BinarySI", "1025"),
    ("1e-9", "DecimalSI", "1n"),
    ("80e-6", "DecimalSI", "80u"),
    ("1e9", "DecimalExponent", "1e9"),
    ("80e-3", "DecimalExponent", "80e-3"),
    (str(2**30), "BinarySI", "1Gi"),
    (str(300 * 2**20), "BinarySI", "300Mi"),
    ("1.5", "DecimalSI", "1500m"),
    ("0", "DecimalSI", "0"),
]


@pytest.mark.parametrize(("value", "fmt", "want"), GOLDEN)
def test_golden_format(value: str, fmt: str, want: str) -> None:
    assert format_quantity(Decimal(value), fmt) == want  # type: ignore[arg-type]
    if not want.startswith("0"):
        assert format_quantity(-Decimal(value), fmt) == "-" + want  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "want"),
    [  # TestQuantityParseEmit
        ("1024Mi", "1Gi"),
        ("1000M", "1G"),
        (".001Ki", "1024m"),
        (".000000000001Ki", "2n"),
        ("-1024Mi", "-1Gi"),
        ("1500m", "1500m"),
        ("0.5", "500m"),
        ("1000u", "1m"),
        ("5000m", "5"),
        ("1.08", "1080m"),
        ("1000Mi", "1000Mi"),
        ("0.1n", "1n"),
        ("12e3", "12e3"),
    ],
)
def test_parse_emit(text: str, want: str) -> None:
    assert canonicalize(text) == want


@pytest.mark.parametrize("bad", ["", "1.2.3", "Ki", "1X", "--1", "1 k"])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(QuantityError):
        canonicalize(bad)


def test_value_policy() -> None:
    assert sanitize(math.nan) is Rejected.NAN
    assert sanitize(math.inf) is Rejected.INFINITE
    assert sanitize(-math.inf) is Rejected.INFINITE
    assert float_quantity(-3.5) == "0"
    assert float_quantity(0.1) == "100m"
    assert float_quantity(1 / 3) == "333333334n"  # rounded away from zero to 1n, like ParseQuantity
    assert float_quantity(42.0) == "42"
    assert float_quantity(2500.0) == "2500"
    assert float_quantity(1e30) == format_quantity(MAX_SERVABLE)
    assert float_quantity(1e-12) == "1n"
