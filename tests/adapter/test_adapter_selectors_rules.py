"""Label selectors (every canonical form) and rules (strict, injection-safe PromQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter import rules
from adapter.api.selectors import EVERYTHING, Op, SelectorError, parse_selector
from adapter.provider import BadQuery


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("a=b", "a=b"),
        ("a==b", "a=b"),
        ("a!=b", "a!=b"),
        ("a in (x,y)", "a in (x,y)"),
        ("a in (y, x)", "a in (x,y)"),
        ("a notin (x)", "a notin (x)"),
        ("a", "a"),
        ("!a", "!a"),
        ("a>3", "a>3"),
        ("a<-2", "a<-2"),
        ("b=1,a=2", "a=2,b=1"),
        (" a = b , c ", "a=b,c"),
        ("app.kubernetes.io/name=llm", "app.kubernetes.io/name=llm"),
        ("a=", "a="),
        ("scaledobject.keda.sh/name=my-so,x in (1,2)", "scaledobject.keda.sh/name=my-so,x in (1,2)"),
    ],
)
def test_parse_canonical(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


def test_blank_selects_everything() -> None:
    assert parse_selector(None) is EVERYTHING
    assert parse_selector("  ") is EVERYTHING
    assert EVERYTHING.matches({"x": "y"})


@pytest.mark.parametrize(
    "bad",
    [
        "a in (x",
        "a)",
        "=b",
        "a=b=c",
        "a in ((x))",
        "a>x",
        "a,,b",
        "a b",
        "k=" + "v" * 70,
        "bad key=1",
        "x" * 5000,
    ],
)
def test_parse_errors(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(bad)


@pytest.mark.parametrize(
    ("text", "labels", "want"),
    [
        ("a=b", {"a": "b"}, True),
        ("a=b", {}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a in (x,y)", {"a": "y"}, True),
        ("a notin (x)", {"a": "x"}, False),
        ("a notin (x)", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": ""}, False),
        ("a>3", {"a": "4"}, True),
        ("a>3", {"a": "z"}, False),
        ("a<3", {}, False),
        ("a=b,c", {"a": "b"}, False),
    ],
)
def test_matches(text: str, labels: dict[str, str], want: bool) -> None:
    assert parse_selector(text).matches(labels) is want


def test_requirement_ops() -> None:
    assert [r.op for r in parse_selector("a,!b,c in (1)").requirements] == [
        Op.EXISTS,
        Op.DOES_NOT_EXIST,
        Op.IN,
    ]


def _rule(**kw: object) -> rules.Rule:
    raw = {"name": "m", "query": "sum(x{<<matchers>>})", **kw}
    return rules.from_mapping({"rules": [raw]})[0]


def test_render_matchers_are_escaped() -> None:
    rule = _rule()
    q = rules.render(rule, 'ns"}) or vector(1) #', parse_selector("app.kubernetes.io/name in (a.b,c),!x,y"))
    assert q == ('sum(x{namespace="ns\\"}) or vector(1) #",app_kubernetes_io_name=~"a\\\\.b|c",x="",y!=""})')
    with pytest.raises(BadQuery):
        rules.render(rule, "ns", parse_selector("a>1"))


def test_render_not_namespaced_and_group_by() -> None:
    rule = _rule(namespaced=False, api="custom", query="sum by (<<group_by>>) (x{<<matchers>>})")
    assert rules.render(rule, "ns", EVERYTHING) == "sum by (pod) (x{})"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"name": "m"}, "missing required key 'query'"),
        ({"name": "m", "query": "q", "colour": 1}, "unknown key 'colour'"),
        ({"name": "m", "query": "q", "api": "metrics"}, "allowed: external, custom"),
        ({"name": "m", "query": "q", "freshness_s": "1m"}, "wrong type"),
        ({"name": "m", "query": "q", "namespaced": 1}, "wrong type"),
        ({"name": "a/b", "query": "q"}, "not a valid metric name"),
        ({"name": "m", "query": "q", "cache_s": 500}, "exceeds freshness_s"),
        ({"name": "m", "query": "x{<<ns>>}"}, "unknown placeholder"),
    ],
)
def test_rules_strict(raw: dict[str, object], fragment: str) -> None:
    with pytest.raises(rules.RuleError, match=fragment.replace("(", r"\(")):
        rules.from_mapping({"rules": [raw]})


def test_duplicates_and_shape() -> None:
    with pytest.raises(rules.RuleError, match="duplicate"):
        rules.from_mapping({"rules": [{"name": "m", "query": "q"}, {"name": "m", "query": "r"}]})
    with pytest.raises(rules.RuleError, match="single key"):
        rules.from_mapping({"rules": [], "extra": 1})


@pytest.mark.parametrize("name", rules.PRESETS)
def test_presets_load(name: str) -> None:
    assert rules.load_preset(name)


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("rules:\n  - name: q\n    query: sum(x{<<matchers>>})\n    freshness_s: 30\n")
    assert rules.load_file(path)[0].freshness_s == 30.0
    path.write_text("rules: [")
    with pytest.raises(rules.RuleError, match="cannot read"):
        rules.load_file(path)
