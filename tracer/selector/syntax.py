"""Selector syntax tree: node types, Calico's canonical string, reference evaluation.

Mirrors libcalico-go ``lib/selector/parser/ast.go`` (v3.32.1). The canonical text is what
``Selector.String()`` builds with ``collectFragments``:

- ``&&``/``||`` nodes are always wrapped in parentheses, even at the top level, and the parser
  never flattens nested groups, so ``a && (b && c)`` stays two AND nodes;
- ``!`` is written directly before its operand (``!(a == 'b')`` becomes ``!a == "b"``);
- values are double-quoted unless they contain ``"``, then single-quoted;
- set members are sorted (byte order) and de-duplicated at parse time.

``evaluate`` is the plain reference semantics; ``matcher`` builds the fast matcher and
the tests check the two agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace

# Comparison operators of a Compare node, spelled as in the canonical text.
EQ, NE, CONTAINS, STARTS_WITH, ENDS_WITH = "==", "!=", "contains", "starts with", "ends with"


@dataclass(frozen=True, slots=True)
class Compare:
    """``label <op> "value"`` (LabelEq/Ne/Contains/StartsWith/EndsWithValueNode)."""

    label: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class InSet:
    """``label in {...}`` or, with ``negated``, ``label not in {...}``; values sorted, unique."""

    label: str
    values: tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Has:
    """``has(label)``."""

    label: str


@dataclass(frozen=True, slots=True)
class Not:
    """``!operand``; the parser folds runs of ``!`` so this wraps a non-Not (except via parens)."""

    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    """Two or more operands joined by ``&&``."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """Two or more operands joined by ``||``."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class All:
    """``all()``: matches everything (also what an empty selector parses to)."""


@dataclass(frozen=True, slots=True)
class Global:
    """``global()``: GlobalNode.Evaluate is always true in ast.go; it only means "not namespaced"
    because libcalico-go rewrites it textually in rule namespaceSelectors (see
    ``Selector.replace_all_and_global``)."""


Node = Compare | InSet | Has | Not | And | Or | All | Global


def canonical_text(node: Node) -> str:
    """Calico's ``Selector.String()`` for this tree."""
    parts: list[str] = []
    _fragments(node, parts)
    return "".join(parts)


def quote(value: str) -> str:
    """appendLabelOpAndQuotedString: double quotes unless the value holds a double quote."""
    mark = "'" if '"' in value else '"'
    return f"{mark}{value}{mark}"


def _fragments(node: Node, out: list[str]) -> None:
    match node:
        case Compare(label, op, value):
            out.append(f"{label} {op} {quote(value)}")
        case InSet(label, values, negated):
            members = ", ".join(quote(value) for value in values)
            out.append(f"{label} {'not in' if negated else 'in'} {{{members}}}")
        case Has(label):
            out.append(f"has({label})")
        case Not(operand):
            out.append("!")
            _fragments(operand, out)
        case And(operands) | Or(operands):
            joiner = " && " if isinstance(node, And) else " || "
            out.append("(")
            for index, operand in enumerate(operands):
                if index:
                    out.append(joiner)
                _fragments(operand, out)
            out.append(")")
        case All():
            out.append("all()")
        case Global():
            out.append("global()")


def evaluate(node: Node, labels: Mapping[str, str]) -> bool:
    """Reference semantics of ast.go's Evaluate methods (slow; see matcher)."""
    match node:
        case Compare(label, op, value):
            return _compare(labels.get(label), op, value)
        case InSet(label, values, negated):
            if label not in labels:
                return negated  # LabelNotInSetNode is true for a missing label
            return (labels[label] in values) != negated
        case Has(label):
            return label in labels
        case Not(operand):
            return not evaluate(operand, labels)
        case And(operands):
            return all(evaluate(operand, labels) for operand in operands)
        case Or(operands):
            return any(evaluate(operand, labels) for operand in operands)
        case All() | Global():
            return True
    raise TypeError(f"not a selector node: {node!r}")


def _compare(actual: str | None, op: str, value: str) -> bool:
    if actual is None:
        return op == NE  # only != matches a missing label
    if op == EQ:
        return actual == value
    if op == NE:
        return actual != value
    if op == CONTAINS:
        return value in actual
    if op == STARTS_WITH:
        return actual.startswith(value)
    return actual.endswith(value)


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        match current:
            case Not(operand):
                stack.append(operand)
            case And(operands) | Or(operands):
                stack.extend(reversed(operands))


def label_keys(node: Node) -> frozenset[str]:
    """Label keys the tree reads."""
    return frozenset(
        child.label for child in walk(node) if isinstance(child, Compare | InSet | Has)
    )


def map_labels(node: Node, rename: Callable[[str], str]) -> Node:
    """Copy of the tree with every label key passed through ``rename`` (PrefixVisitor)."""
    match node:
        case Compare() | InSet() | Has():
            return replace(node, label=rename(node.label))
        case Not(operand):
            return Not(map_labels(operand, rename))
        case And(operands):
            return And(tuple(map_labels(operand, rename) for operand in operands))
        case Or(operands):
            return Or(tuple(map_labels(operand, rename) for operand in operands))
    return node
