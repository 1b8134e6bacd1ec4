"""Compile a selector tree into one fast Python function ``match(labels) -> bool``.

The reachability matrix evaluates selectors millions of times, so instead of walking the tree (or
chaining one closure per node) we generate a single expression and compile it once, e.g.
``a == "b" && !has(c)`` becomes ``lambda L: (L.get('a') == 'b') and not ('c' in L)``.

Safety: label keys and values only reach the generated source through ``repr()`` (always a valid
literal of the same string) and sets through named constants, so selector text cannot inject
code; the function runs with no builtins. Semantics are those of ``syntax.evaluate`` (the
tests compare the two); Python's own nesting limits fall back to that reference evaluator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from tracer.selector.syntax import (
    CONTAINS,
    ENDS_WITH,
    EQ,
    NE,
    STARTS_WITH,
    All,
    And,
    Compare,
    Global,
    Has,
    InSet,
    Node,
    Not,
    Or,
    evaluate,
)

Matcher = Callable[[Mapping[str, str]], bool]


def compile_matcher(node: Node) -> Matcher:
    """Return ``match(labels)`` with the semantics of ``evaluate(node, labels)``."""
    constants: dict[str, object] = {"__builtins__": {}}
    try:
        source = f"lambda L: {_expression(node, constants)}"
        return eval(compile(source, "<selector>", "eval"), constants)  # noqa: S307 (see docstring)
    except (RecursionError, SyntaxError, MemoryError):
        # Very deep nesting exceeds CPython's parser limits; stay correct, if slower.
        return partial(evaluate, node)


def _expression(node: Node, constants: dict[str, object]) -> str:
    match node:
        case Compare(label, op, value):
            return _compare(repr(label), op, repr(value))
        case InSet(label, values, negated):
            name = f"S{len(constants)}"
            constants[name] = frozenset(values)
            # A missing label gives None, which is in no set: false for "in", true for "not in".
            return f"(L.get({label!r}) {'not in' if negated else 'in'} {name})"
        case Has(label):
            return f"({label!r} in L)"
        case Not(operand):
            return f"(not {_expression(operand, constants)})"
        case And(operands) | Or(operands):
            joiner = " and " if isinstance(node, And) else " or "
            return "(" + joiner.join(_expression(op, constants) for op in operands) + ")"
        case All() | Global():
            return "True"
    raise TypeError(f"not a selector node: {node!r}")


def _compare(label: str, op: str, value: str) -> str:
    # None (missing label) != value is True, == value is False: exactly Calico's rules.
    if op == EQ:
        return f"(L.get({label}) == {value})"
    if op == NE:
        return f"(L.get({label}) != {value})"
    # The walrus name is reused safely: each use reads it right after assigning it.
    present = f"(v := L.get({label})) is not None"
    if op == CONTAINS:
        return f"({present} and {value} in v)"
    if op == STARTS_WITH:
        return f"({present} and v.startswith({value}))"
    if op == ENDS_WITH:
        return f"({present} and v.endswith({value}))"
    raise ValueError(f"unknown comparison {op!r}")
