"""Calico selector language: parsing, matching, canonical text, IDs, ipset names, errors.

Expected canonical strings and IDs marked "Go" are copied from libcalico-go's own tests
(lib/selector/parser/parser_test.go, tokenizer_test.go) and felix/ipsets/ipsets_test.go at
v3.32.1; the worked examples come from /work/shared/calico-dataplane.md section 5.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracer.errors import InputError
from tracer.selector.selector import (
    ALL,
    Selector,
    SelectorError,
    and_selectors,
    ipset_name,
    make_unique_id,
    parse_selector,
)
from tracer.selector.syntax import And, Compare, Has, Not, Or, evaluate
from tracer.selector.matcher import compile_matcher
from tracer.selector.lexer import Tok, tokenize

NS_HAS = "has(projectcalico.org/namespace)"
NS_NOT_HAS = "!has(projectcalico.org/namespace)"


# --- hashing and set names -------------------------------------------------------------------


def test_worked_example_namespace_set_name():
    sel = parse_selector('projectcalico.org/namespace == "default"')
    assert sel.ipset_name == "cali40s:4g010_DunYvItGg3dv2Mxna"
    assert sel.ipset_name_v6 == "cali60s:4g010_DunYvItGg3dv2Mxna"


def test_worked_example_k8s_ingress_peer():
    text = and_selectors(
        "projectcalico.org/namespace == 'default'",
        "projectcalico.org/orchestrator == 'k8s' && app == 'client'",
    )
    assert text == (
        "(projectcalico.org/namespace == 'default') && "
        "(projectcalico.org/orchestrator == 'k8s' && app == 'client')"
    )
    sel = parse_selector(text)
    assert sel.canonical == (
        '(projectcalico.org/namespace == "default" && '
        '(projectcalico.org/orchestrator == "k8s" && app == "client"))'
    )
    assert sel.ipset_name == "cali40s:g_TM4cHGncRYRKupcms5_3m"
    assert len(sel.ipset_name) == 31


def test_unique_id_is_sha224_of_prefixed_canonical_text():
    sel = parse_selector("a in {'y', 'x'}")
    digest = hashlib.sha224(b's:a in {"x", "y"}').digest()
    assert sel.unique_id == "s:" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert len(sel.unique_id) == 40
    assert make_unique_id("s", sel.canonical) == sel.unique_id


@pytest.mark.parametrize(
    ("text", "canonical", "unique_id"),
    [  # Go: parser_test.go canonicalisationTests
        ("", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
        (" all() ", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
        (" (all() )", "all()", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))",
         "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"),
        ('! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")',
         "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w"),
    ],
)
def test_go_canonical_strings_and_ids(text, canonical, unique_id):
    sel = parse_selector(text)
    assert sel.canonical == canonical
    assert sel.unique_id == unique_id
    assert parse_selector(canonical).unique_id == unique_id


def test_ipset_name_truncates_to_31_characters():
    # Go: felix/ipsets/ipsets_test.go ipSetID -> v4MainIPSetName
    assert ipset_name("s:qMt7iLlGDhvLnCjM0l9nzxbabcd") == "cali40s:qMt7iLlGDhvLnCjM0l9nzxb"
    assert ipset_name("masq-ipam-pools") == "cali40masq-ipam-pools"
    assert ipset_name("all-vxlan-net", ip_version=6) == "cali60all-vxlan-net"


# --- canonical form --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [  # Go: parser_test.go canonicalisationTests (quoting, spelling, set sorting)
        ("a == \"'\"", "a == \"'\""),
        ("a == '\"'", "a == '\"'"),
        ("a contains '\"'", "a contains '\"'"),
        ("a contains \"'\"", "a contains \"'\""),
        ("a startswith '\"'", "a starts with '\"'"),
        ("a endswith \"'\"", "a ends with \"'\""),
        ("a!='\"'", "a != '\"'"),
        ('a in {"d"}', 'a in {"d"}'),
        ('a in {"d", "a", "b"}', 'a in {"a", "b", "d"}'),
        ('a in {"z", "z", "x", "y", "x", "a"}', 'a in {"a", "x", "y", "z"}'),
        # Ours, derived from ast.go collectFragments / parser.go:
        ("a == 'b' && c == 'd'", '(a == "b" && c == "d")'),
        ("a == 'b' && (c == 'd' && e == 'f')", '(a == "b" && (c == "d" && e == "f"))'),
        ("(a == 'b' && c == 'd') && e == 'f'", '((a == "b" && c == "d") && e == "f")'),
        ("((a == 'b'))", 'a == "b"'),
        ("(((has(a)) && ((has(b)))))", "(has(a) && has(b))"),
        ("a == '1' || b == '2' && c == '3'", '(a == "1" || (b == "2" && c == "3"))'),
        ("(a == '1' || b == '2') && c == '3'", '((a == "1" || b == "2") && c == "3")'),
        ("!(a == 'b')", '!a == "b"'),
        ("!!has(a)", "has(a)"),
        ("!!!has(a)", "!has(a)"),
        ("!(has(a) || has(b))", "!(has(a) || has(b))"),
        ("a in {}", "a in {}"),
        ("a not in {'x',}", 'a not in {"x"}'),
        ("a notin{'b','a'}", 'a not in {"a", "b"}'),
        ("global()", "global()"),
        ("\t global( ) ", "global()"),
        ("all( )", "all()"),
        ("k == ''", 'k == ""'),
        ('k == "o\'clock"', 'k == "o\'clock"'),
        ("contains contains 'contains'", 'contains contains "contains"'),
        ("startswith starts  with 'x'", 'startswith starts with "x"'),
        ("in in {'in'}", 'in in {"in"}'),
    ],
)
def test_canonical(text, canonical):
    assert parse_selector(text).canonical == canonical
    assert str(parse_selector(text)) == canonical
    assert parse_selector(canonical).canonical == canonical


def test_double_negation_through_parentheses_is_kept_like_go():
    # parser.go folds "!!" runs, but "!(!x)" nests two NotNodes whose String() is "!!x", and
    # that text re-parses to plain x: Calico's canonical form is not a fixed point here.
    sel = parse_selector("!(!has(a))")
    assert sel.root == Not(Not(Has("a")))
    assert sel.canonical == "!!has(a)"
    assert parse_selector(sel.canonical).canonical == "has(a)"
    assert sel.matches({"a": ""}) and parse_selector(sel.canonical).matches({"a": ""})


def test_parser_does_not_flatten_groups():
    sel = parse_selector("a == 'b' && (c == 'd' && e == 'f')")
    assert sel.root == And((Compare("a", "==", "b"), And((Compare("c", "==", "d"),
                                                            Compare("e", "==", "f")))))
    chain = parse_selector("has(a) || has(b) || has(c)")
    assert chain.root == Or((Has("a"), Has("b"), Has("c")))


# --- matching --------------------------------------------------------------------------------

# Go: parser_test.go selectorTests (selector, must match, must not match)
GO_MATCH_TABLE = [
    ('a == "b"', [{"a": "b"}, {"a": "b", "c": "d"}], [{}, {"a": "c"}, {"c": "d"}]),
    ('a == "b" && c == "d"', [{"a": "b", "c": "d"}],
     [{}, {"a": "b", "c": "e"}, {"a": "c", "c": "d"}, {"c": "d"}, {"a": "b"}]),
    ('a == "b" || c == "d"', [{"a": "b", "c": "d"}, {"a": "b"}, {"c": "d"}],
     [{}, {"a": "e", "c": "e"}, {"c": "e"}, {"a": "e"}]),
    ("a in {\"'\", '\"', \"c\"}", [{"a": "c"}, {"a": '"'}, {"a": "'"}], [{}, {"a": "e"}]),
    ("a not in {\"'\", '\"', \"c\"}", [{}, {"a": "e"}], [{"a": "c"}, {"a": '"'}, {"a": "'"}]),
    ('a != "b"', [{"a": "a"}], []),
    ('a != "a"', [{}], [{"a": "a"}]),
    ('a contains "a"', [{"a": "a"}, {"a": "bab"}, {"a": "aaa", "b": "c"}],
     [{}, {"a": "b"}, {"b": "aaa"}]),
    ('a starts with "a"', [{"a": "a"}, {"a": "abb"}, {"a": "aaa", "b": "c"}],
     [{}, {"a": "b"}, {"a": "baa"}, {"b": "aaa"}]),
    ('a ends with "a"', [{"a": "a"}, {"a": "bba"}, {"a": "aaa", "b": "c"}],
     [{}, {"a": "b"}, {"a": "aab"}, {"b": "aaa"}]),
    ('!a in {"a"}', [{"a": "b"}], []),
    ('a in {"a", "b"}', [{"a": "a"}, {"a": "b"}], [{"a": "c"}]),
    ('a not in {"d", "e"}', [{"a": "a"}], []),
    ('a not in {"a"}', [], [{"a": "a"}]),
    ("has(a)", [{"a": "b"}], []),
    ("!has(a)", [{"b": "b"}], [{"a": "b"}]),
    ("has(b)", [], [{"a": "b"}]),
    ("!!has(b)", [], [{"a": "b"}]),
    ("! has(a)", [], [{"a": "b"}]),
    ("!!! has(a)", [], [{"a": "b"}]),
    ("!! ! has(a)", [], [{"a": "b"}]),
    ("! !!has(a)", [], [{"a": "b"}]),
    ("", [{}, {"a": "b"}], []),
    (" ", [{}], []),
    (" all()", [{}, {"a": "b"}], []),
    (" global()", [{}, {"a": "b"}], []),
    ("a == 'a1' && b == 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a == 'a1' && b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("a != 'a1' && !b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("!a == 'a1' && b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("has(a) && !has(b)", [{"a": "a"}], []),
    ("!(!has(a) || has(b))", [{"a": "a"}], []),
    ("!(has(b) || !has(a))", [{"a": "a"}], []),
    ("a == 'a1' || b != 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a != 'a1' || b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("! a == 'a1' || ! b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
]


@pytest.mark.parametrize(("text", "positives", "negatives"), GO_MATCH_TABLE)
def test_go_match_table(text, positives, negatives):
    sel = parse_selector(text)
    again = parse_selector(sel.canonical)
    for labels in positives:
        assert sel.matches(labels) and again.matches(labels), labels
        assert evaluate(sel.root, labels)
    for labels in negatives:
        assert not sel.matches(labels) and not again.matches(labels), labels
        assert not evaluate(sel.root, labels)


@pytest.mark.parametrize(
    ("text", "when_absent"),
    [
        ("k == 'v'", False),
        ("k != 'v'", True),
        ("k in {'v'}", False),
        ("k not in {'v'}", True),
        ("k contains ''", False),
        ("k starts with ''", False),
        ("k ends with ''", False),
        ("has(k)", False),
        ("!has(k)", True),
        ("!k == 'v'", True),
        ("k in {}", False),
        ("k not in {}", True),
    ],
)
def test_missing_label_semantics(text, when_absent):
    sel = parse_selector(text)
    assert sel.matches({"other": "v"}) is when_absent
    assert evaluate(sel.root, {"other": "v"}) is when_absent


def test_empty_string_operands_match_present_labels():
    assert parse_selector("k contains ''").matches({"k": ""})
    assert parse_selector("k starts with ''").matches({"k": "x"})
    assert parse_selector("k == ''").matches({"k": ""})
    assert not parse_selector("k == ''").matches({})
    assert parse_selector("has(k)").matches({"k": ""})


def test_precedence_and_binds_tighter_than_or():
    sel = parse_selector("a == '1' || b == '2' && c == '3'")
    assert sel.matches({"a": "1"})
    assert not sel.matches({"b": "2"})
    assert sel.matches({"b": "2", "c": "3"})
    grouped = parse_selector("(a == '1' || b == '2') && c == '3'")
    assert not grouped.matches({"a": "1"})
    assert grouped.matches({"a": "1", "c": "3"})


def test_not_binds_to_one_operation():
    sel = parse_selector("!has(a) && has(b)")
    assert sel.matches({"b": "x"}) and not sel.matches({"a": "x", "b": "x"})
    assert not sel.matches({})
    whole = parse_selector("!(has(a) && has(b))")
    assert whole.matches({}) and whole.matches({"a": "x"}) and not whole.matches({"a": "", "b": ""})


def test_values_are_literal_and_case_sensitive():
    assert not parse_selector("app == 'Web'").matches({"app": "web"})
    assert parse_selector("app == 'a && b'").matches({"app": "a && b"})
    assert parse_selector("app contains '('").matches({"app": "f(x)"})


def test_matches_accepts_any_mapping():
    assert parse_selector("a == 'b' && !has(c)").matches(MappingProxyType({"a": "b"}))


def test_deeply_nested_selector_falls_back_to_reference_evaluator():
    text = "has(x)"
    for depth in range(110):
        text = f"!(has(l{depth}) && {text})"
    sel = parse_selector(text)
    assert isinstance(sel.matcher, functools.partial)  # too deep for CPython's parser
    assert compile_matcher(Has("x")) is not sel.matcher
    everything = {f"l{depth}": "" for depth in range(110)}
    for labels in ({}, {"x": ""}, {"l0": ""}, everything, {**everything, "x": ""}):
        assert sel.matches(labels) == evaluate(sel.root, labels)


def test_absurd_nesting_is_a_selector_error():
    with pytest.raises(SelectorError, match="nested too deeply"):
        parse_selector("(" * 5000 + "has(a)" + ")" * 5000)


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ('a == "b', 6, "unterminated string"),
        ("a == 'b' && c == 'd", 18, "unterminated string"),
        ("a = 'b'", 3, "expected '=='"),
        ("a == 'b' & has(c)", 10, "expected '&&'"),
        ("a == 'b' | has(c)", 10, "expected '||'"),
        ("a squiggles 'b'", 3, 'expected an operator (==, !=, in, not in, contains, starts with, '
                              'ends with) after label "a"'),
        ("label starts foo 'x'", 7, "expected an operator"),
        ("a starts with b", 3, "expected an operator"),
        ("a == b", 6, "expected a quoted string after '==', found label \"b\""),
        ("'b1' == b", 1, "expected an expression, found a quoted string"),
        ("a ==", 5, "expected a quoted string after '==', found end of selector"),
        ("b", 2, 'expected an operator after label "b", found end of selector'),
        ("a (", 3, "expected an operator after label \"a\", found '('"),
        ("a == 'b' c == 'd'", 10, "unexpected label \"c\" after a complete expression"),
        ("a == 'b')", 9, "unexpected ')' after a complete expression"),
        ("all() all()", 7, "unexpected 'all()' after a complete expression"),
        ("()", 2, "expected an expression, found ')'"),
        ("a == 'b' && ()", 14, "expected an expression, found ')'"),
        ("(a == 'b'", 10, "expected ')' to close the '(' at column 1, found end of selector"),
        ("x == 'y' && (a == 'b' || c", 27, 'expected an operator after label "c"'),
        ("!", 2, "expected an expression, found end of selector"),
        ("has(foo) &&", 12, "expected an expression, found end of selector"),
        ("foo in ''", 8, "expected '{' after 'in', found a quoted string"),
        ("foo not in 'x'", 12, "expected '{' after 'not in', found a quoted string"),
        # The two-word operators check the word boundary after the following whitespace.
        ("foo not in x", 5, 'expected an operator (==, !=, in, not in, contains'),
        ("foo in x", 8, "expected '{' after 'in', found label \"x\""),
        ("foo in {'a' 'b'}", 13, "expected ',' or '}' in set, found a quoted string"),
        ("foo in {'', ||", 13, "expected a quoted string or '}' in set, found '||'"),
        ("foo in {,}", 9, "expected a quoted string or '}' in set, found ','"),
        ("has()", 5, "expected a label name inside has(, found ')'"),
        ("has( foo ", 10, "no closing ')' after has("),
        ("has(a b)", 7, "no closing ')' after has("),
        ("all(", 5, "no closing ')' after all("),
        ("global( x)", 9, "no closing ')' after global("),
        ("%", 1, "unexpected character '%'"),
        ("a == 'b' || %", 13, "unexpected character '%'"),
        ("a == 'b'\n", 9, "unexpected character '\\n' (only spaces and tabs"),
        ("app\n== 'b'", 4, "unexpected character '\\n'"),
        ("ä == 'b'", 1, "unexpected character 'ä'"),
        ("x" * 513 + " == 'v'", 1, "label too long (513 characters, the limit is 512)"),
        ("has(" + "y" * 600 + ")", 5, "label too long (600 characters"),
    ],
)
def test_error_columns(text, column, fragment):
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    err = caught.value
    assert err.column == column, str(err)
    assert fragment in err.message
    assert str(err) == f"column {column}: {err.message}"
    assert err.text == text


@pytest.mark.parametrize(
    "text",
    [  # Go: parser_test.go badSelectors and tokenizer_test.go error cases
        "b == b", "b contains b", "b starts with b", "b ends with b", "'b1' == b", "b", "a b",
        "!", 'foo == "bar" &', 'foo == "bar" |', "foo != ||", 'foo in {"", ||', 'foo in ""',
        '"FOO', "\"FOO'", "'FOO", "(", '(a == "foo"', ")", "()", "%", 'a == "b" && %',
        'a == "b" || %', "a ", "has(foo) &&", 'label == "value', "label == 'value",
        'label = "value"', "all(", "global(", "has()", "has(foo", "has( foo ",
        'a == "b" & has(foo)', 'a == "b" | has(foo)', 'label starts foo "value"',
        'label inf "value"', 'label ends foo "value"', 'label ends withs "value"',
        'label squiggles "value"', "a not in \"bar\" && !has(foo) || b in c",
    ],
)
def test_go_bad_selectors_are_rejected(text):
    with pytest.raises(SelectorError):
        parse_selector(text)


def test_selector_error_is_value_error_and_input_error():
    with pytest.raises(ValueError):
        parse_selector("a ==")
    with pytest.raises(InputError):
        parse_selector("a ==")


def test_label_length_limit_is_512():
    assert parse_selector("a" * 512 + " == 'v'").matches({"a" * 512: "v"})


# --- tokenizer details -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kinds"),
    [  # Go: tokenizer_test.go
        ('a=="b"', [Tok.LABEL, Tok.EQ, Tok.STRING, Tok.EOF]),
        ('label contains"value"', [Tok.LABEL, Tok.CONTAINS, Tok.STRING, Tok.EOF]),
        ('endswith ends with "value"', [Tok.LABEL, Tok.ENDS_WITH, Tok.STRING, Tok.EOF]),
        ('a notin"bar"&&!has(foo)||b in"c"',
         [Tok.LABEL, Tok.NOT_IN, Tok.STRING, Tok.AND, Tok.NOT, Tok.HAS, Tok.OR, Tok.LABEL,
          Tok.IN, Tok.STRING, Tok.EOF]),
        ("a  not  in  {}", [Tok.LABEL, Tok.NOT_IN, Tok.LBRACE, Tok.RBRACE, Tok.EOF]),
        ("global( )", [Tok.GLOBAL, Tok.EOF]),
    ],
)
def test_tokenizer(text, kinds):
    assert [token.kind for token in tokenize(text)] == kinds


def test_tokenizer_label_characters_and_positions():
    tokens = tokenize('calico/k8s_ns == "kube-system" && has(calico/k8s_NS-.1/role)')
    assert [(t.kind, t.value, t.pos) for t in tokens] == [
        (Tok.LABEL, "calico/k8s_ns", 0),
        (Tok.EQ, "", 14),
        (Tok.STRING, "kube-system", 17),
        (Tok.AND, "", 31),
        (Tok.HAS, "calico/k8s_NS-.1/role", 34),
        (Tok.EOF, "", 60),
    ]


# --- object behaviour ------------------------------------------------------------------------


def test_label_keys():
    sel = parse_selector("a == 'x' && (has(b) || !c in {'1'}) && d not in {} && global() || all()")
    assert sel.label_keys == frozenset({"a", "b", "c", "d"})
    assert ALL.label_keys == frozenset()


def test_selectors_compare_by_canonical_text_and_are_cached():
    one, two = parse_selector("a=='b'&&has(c)"), parse_selector("(a == 'b') && has( c )")
    assert one == two and hash(one) == hash(two) and one.source != two.source
    assert len({one, two, ALL}) == 2
    assert parse_selector("a=='b'&&has(c)") is one
    assert ALL == parse_selector("") and ALL.canonical == "all()"
    with pytest.raises(AttributeError):
        one.source = "x"  # type: ignore[misc]
    assert isinstance(one, Selector)


@pytest.mark.parametrize(
    ("text", "prefixed"),
    [  # Go: parser_test.go Visitor tests
        ("k == 'v'", 'visited/k == "v"'),
        ("k != 'v'", 'visited/k != "v"'),
        ("k contains 'v'", 'visited/k contains "v"'),
        ("k starts with 'v'", 'visited/k starts with "v"'),
        ("k ends with 'v'", 'visited/k ends with "v"'),
        ("k == 'v' && x == 'y'", '(visited/k == "v" && visited/x == "y")'),
        ("k == 'v' || has(x)", '(visited/k == "v" || has(visited/x))'),
        ("!(k == 'v')", '!visited/k == "v"'),
        ("k in {'v'}", 'visited/k in {"v"}'),
        ("k not in {'v'}", 'visited/k not in {"v"}'),
        ("!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
         '!(!((visited/k == "v" && has(visited/t)) || all()) && visited/a in {"b", "c"})'),
    ],
)
def test_with_label_prefix(text, prefixed):
    sel = parse_selector(text).with_label_prefix("visited/")
    assert sel.canonical == prefixed
    assert sel.source == prefixed


def test_with_label_prefix_matches_prefixed_labels():
    sel = parse_selector("team == 'a' && !has(legacy)").with_label_prefix("pcns.")
    assert sel.label_keys == {"pcns.team", "pcns.legacy"}
    assert sel.matches({"pcns.team": "a", "team": "b"})
    assert not sel.matches({"team": "a"})


@pytest.mark.parametrize(
    ("namespace_selector", "expected"),
    [
        ("all()", NS_HAS),
        ("global()", NS_NOT_HAS),
        ("", NS_HAS),  # parses as all()
        ("team == 'a' || global()", f'(pcns.team == "a" || {NS_NOT_HAS})'),
        ("!all()", f"!{NS_HAS}"),
        # Calico substitutes text, so quoted values are rewritten too.
        ("team == 'all()'", f'pcns.team == "{NS_HAS}"'),
    ],
)
def test_namespace_selector_rewrite(namespace_selector, expected):
    sel = parse_selector(namespace_selector).with_label_prefix("pcns.")
    rewritten = sel.replace_all_and_global(NS_HAS, NS_NOT_HAS)
    assert rewritten.canonical == expected
    assert rewritten.source == rewritten.canonical


def test_global_rewrite_changes_meaning():
    ns = parse_selector("global()").with_label_prefix("pcns.")
    assert ns.matches({"projectcalico.org/namespace": "default"})  # GlobalNode is always true
    rewritten = ns.replace_all_and_global(NS_HAS, NS_NOT_HAS)
    assert not rewritten.matches({"projectcalico.org/namespace": "default"})
    assert rewritten.matches({"host": "node1"})


def test_and_selectors():
    assert and_selectors() == ""
    assert and_selectors("", " ") == ""
    assert and_selectors("", "a == 'b'", "") == "a == 'b'"
    assert and_selectors("a == 'b'", "has(c) || has(d)") == "(a == 'b') && (has(c) || has(d))"
    assert and_selectors("x == '1'", "", "has(y)", "z != '2'") == (
        "(x == '1') && (has(y)) && (z != '2')"
    )
    combined = parse_selector(and_selectors("a == 'b'", "has(c) || has(d)"))
    assert combined.canonical == '(a == "b" && (has(c) || has(d)))'


# --- properties ------------------------------------------------------------------------------

KEYS = ["a", "b", "app", "x.io/y-z", "projectcalico.org/namespace"]
VALUES = ["", "x", "xy", "yx", "web", '"', "'", "a b", "&&", "all()", "ü"]


def _quote(draw, value: str) -> str:
    if '"' in value:
        return f"'{value}'"
    if "'" in value:
        return f'"{value}"'
    mark = draw(st.sampled_from(["'", '"']))
    return f"{mark}{value}{mark}"


def _space(draw) -> str:
    return draw(st.sampled_from(["", " ", "  ", "\t"]))


@st.composite
def leaves(draw):
    """(text, oracle) for one operation; the oracle is written independently of the library."""
    key = draw(st.sampled_from(KEYS))
    kind = draw(st.sampled_from(["==", "!=", "contains", "startswith", "ends  with", "in",
                                 "not in", "has", "all", "global"]))
    sp = _space(draw)
    if kind == "has":
        return f"has({sp}{key}{sp})", lambda labels: key in labels
    if kind in ("all", "global"):
        return f"{kind}({sp})", lambda labels: True
    if kind in ("in", "not in"):
        values = draw(st.lists(st.sampled_from(VALUES), max_size=4))
        members = ",".join(sp + _quote(draw, v) for v in values)
        text = f"{key} {kind} {{{members}}}"
        if kind == "in":
            return text, lambda labels: key in labels and labels[key] in values
        return text, lambda labels: key not in labels or labels[key] not in values
    value = draw(st.sampled_from(VALUES))
    text = f"{key}{sp} {kind} {sp}{_quote(draw, value)}"
    tests = {
        "==": lambda actual: actual == value,
        "contains": lambda actual: value in actual,
        "startswith": lambda actual: actual.startswith(value),
        "ends  with": lambda actual: actual.endswith(value),
    }
    if kind == "!=":
        return text, lambda labels: labels.get(key) != value
    return text, lambda labels: key in labels and tests[kind](labels[key])


def _combine(children):
    def negate(pair, bangs):
        text, oracle = pair
        odd = bangs % 2 == 1
        return "!" * bangs + f"({text})", (lambda labels: not oracle(labels)) if odd else oracle

    def join(pairs, op):
        (left, lo), (right, ro) = pairs
        if op == "&&":
            return f"({left}) && ({right})", lambda labels: lo(labels) and ro(labels)
        return f"({left}) || ({right})", lambda labels: lo(labels) or ro(labels)

    def chain(triple):
        # Unparenthesised: a || b && c must group as a || (b && c).
        (a, ao), (b, bo), (c, co) = triple
        return f"{a} || {b} && {c}", lambda labels: ao(labels) or (bo(labels) and co(labels))

    return st.one_of(
        st.tuples(children, st.integers(1, 3)).map(lambda args: negate(*args)),
        st.tuples(st.tuples(children, children), st.sampled_from(["&&", "||"])).map(
            lambda args: join(*args)
        ),
        st.tuples(leaves(), leaves(), leaves()).map(chain),
    )


SELECTORS = st.recursive(leaves(), _combine, max_leaves=8)
LABEL_MAPS = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=5)


@settings(max_examples=300, deadline=None)
@given(SELECTORS, st.lists(LABEL_MAPS, min_size=1, max_size=6))
def test_property_canonical_round_trip_and_matching(pair, label_maps):
    text, oracle = pair
    sel = parse_selector(text)
    again = parse_selector(sel.canonical)
    if "!!" not in sel.canonical:  # see test_double_negation_through_parentheses_is_kept_like_go
        assert again.canonical == sel.canonical
        assert again.unique_id == sel.unique_id
    assert parse_selector(again.canonical).canonical == again.canonical
    prefixed = sel.with_label_prefix("pcns.")
    for labels in label_maps:
        expected = oracle(labels)
        assert sel.matches(labels) is expected, (text, labels)
        assert evaluate(sel.root, labels) is expected
        assert again.matches(labels) is expected
        assert prefixed.matches({"pcns." + k: v for k, v in labels.items()}) is expected


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(list("ab()!=&|{},'\" \t\n_./-%")
                        + ["has(", "all(", "global(", " in ", " not in ", " contains "]),
        max_size=25,
    ).map("".join)
)
def test_property_arbitrary_text_parses_or_raises_selector_error(text):
    try:
        sel = parse_selector(text)
    except SelectorError as err:
        assert 1 <= err.column <= len(text) + 1
    else:
        assert parse_selector(sel.canonical).matches({"a": "b"}) == sel.matches({"a": "b"})
