"""Kubernetes label selectors: parse the string form the HPA sends, and match label sets.

Grammar (apimachinery ``pkg/labels/selector.go``): requirements joined by ``,``; each is
``key=value``, ``key==value``, ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``, ``key``
(exists), ``!key`` (does not exist), ``key>n`` or ``key<n``. Whitespace around tokens is
ignored; the query string's ``+`` has already become a space when aiohttp decodes it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final


class SelectorError(ValueError):
    """A selector string that does not parse; the message is safe to return to the client."""


class Op(Enum):
    """Requirement operators, named as in apimachinery ``selection.Operator``."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER = ">"
    LESS = "<"


_KEY_RE: Final = re.compile(
    r"^(?:[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_VALUE_RE: Final = re.compile(r"^(?:[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_MAX_SELECTOR_LEN: Final = 4096
_MAX_REQUIREMENTS: Final = 64


@dataclass(frozen=True)
class Requirement:
    """One requirement; ``values`` is sorted (empty for exists / does-not-exist)."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this requirement (apimachinery semantics)."""
        present = self.key in labels
        value = labels.get(self.key, "")
        match self.op:
            case Op.EQUALS | Op.IN:
                return present and value in self.values
            case Op.NOT_EQUALS | Op.NOT_IN:
                return not present or value not in self.values
            case Op.EXISTS:
                return present
            case Op.DOES_NOT_EXIST:
                return not present
            case Op.GREATER | Op.LESS:
                return present and _compare(value, self.op, self.values[0])


def _compare(value: str, op: Op, bound: str) -> bool:
    try:
        v = int(value)
    except ValueError:
        return False
    return v > int(bound) if op is Op.GREATER else v < int(bound)


@dataclass(frozen=True)
class Selector:
    """A parsed selector; empty means "everything"."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every requirement holds for ``labels``."""
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(_render(r) for r in self.requirements)


EVERYTHING: Final = Selector()


def _render(r: Requirement) -> str:
    match r.op:
        case Op.EXISTS:
            return r.key
        case Op.DOES_NOT_EXIST:
            return f"!{r.key}"
        case Op.IN | Op.NOT_IN:
            return f"{r.key} {r.op.value} ({','.join(r.values)})"
        case _:
            return f"{r.key}{r.op.value}{r.values[0]}"


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
            if depth > 1:
                raise SelectorError("nested parentheses in selector")
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError("unbalanced ')' in selector")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise SelectorError("unbalanced '(' in selector")
    parts.append(text[start:])
    return parts


def _check_key(key: str) -> str:
    if not _KEY_RE.match(key):
        raise SelectorError(f"invalid label key {key[:80]!r}")
    return key


def _check_value(value: str) -> str:
    if not _VALUE_RE.match(value):
        raise SelectorError(f"invalid label value {value[:80]!r}")
    return value


_SET_RE: Final = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$", re.DOTALL)
_CMP_RE: Final = re.compile(r"^([^=!<>\s]+)\s*(==|=|!=|>|<)\s*(.*)$", re.DOTALL)


def _parse_one(raw: str) -> Requirement:
    text = raw.strip()
    if not text:
        raise SelectorError("empty requirement in selector")
    if m := _SET_RE.match(text):
        values = tuple(sorted({_check_value(v.strip()) for v in m.group(3).split(",")}))
        op = Op.IN if m.group(2) == "in" else Op.NOT_IN
        return Requirement(_check_key(m.group(1)), op, values)
    if m := _CMP_RE.match(text):
        key, sym, value = _check_key(m.group(1)), m.group(2), m.group(3).strip()
        if sym in (">", "<"):
            if not re.fullmatch(r"-?\d{1,18}", value):
                raise SelectorError(f"{key}{sym}: value must be an integer, got {value[:40]!r}")
            return Requirement(key, Op.GREATER if sym == ">" else Op.LESS, (value,))
        op = Op.NOT_EQUALS if sym == "!=" else Op.EQUALS
        return Requirement(key, op, (_check_value(value),))
    if text.startswith("!"):
        return Requirement(_check_key(text[1:].strip()), Op.DOES_NOT_EXIST)
    return Requirement(_check_key(text), Op.EXISTS)


@functools.lru_cache(maxsize=4096)
def parse_selector(text: str | None) -> Selector:
    """Parse a selector string; None or blank selects everything.

    Requirements are sorted by key (and operator) so equal selectors compare and hash equal,
    which is what the query cache keys on.
    """
    if text is None or not text.strip():
        return EVERYTHING
    if len(text) > _MAX_SELECTOR_LEN:
        raise SelectorError(f"selector longer than {_MAX_SELECTOR_LEN} characters")
    parts = _split_top(text)
    if len(parts) > _MAX_REQUIREMENTS:
        raise SelectorError(f"more than {_MAX_REQUIREMENTS} requirements in selector")
    reqs = sorted((_parse_one(p) for p in parts), key=lambda r: (r.key, r.op.value, r.values))
    return Selector(tuple(reqs))
