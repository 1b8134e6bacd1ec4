"""Recursive-descent parser for Calico selectors, producing ``syntax`` trees.

Mirrors libcalico-go ``lib/selector/parser/parser.go`` (v3.32.1):

- ``||`` binds loosest, then ``&&``, then the operations; no flattening of nested groups, and a
  group or chain of one term is that term (``(a == 'b')`` is just the comparison);
- a run of leading ``!`` collapses to one boolean (``!!has(a)`` is ``has(a)``), but ``!(!x)``
  keeps both negations because the inner one belongs to the parenthesised expression;
- ``in {...}`` accepts an empty set and a trailing comma, and sorts and de-duplicates members;
- an empty (or all-whitespace) selector is ``all()``; anything left after the expression is an
  error.
"""

from __future__ import annotations

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
)
from tracer.selector.lexer import SelectorError, Tok, Token, tokenize

_COMPARE_OPS = {
    Tok.EQ: EQ,
    Tok.NE: NE,
    Tok.CONTAINS: CONTAINS,
    Tok.STARTS_WITH: STARTS_WITH,
    Tok.ENDS_WITH: ENDS_WITH,
}


def parse_tree(text: str) -> Node:
    """Parse selector text into a tree; raises SelectorError like Calico's parser.Parse."""
    try:
        return _Parser(text, tokenize(text)).parse()
    except RecursionError:
        raise SelectorError("selector nested too deeply", 1, text) from None


class _Parser:
    """Walks the token list (which always ends with EOF) with one index."""

    def __init__(self, text: str, tokens: list[Token]):
        self.text = text
        self.tokens = tokens
        self.index = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def error(self, token: Token, message: str) -> SelectorError:
        return SelectorError(message, token.pos + 1, self.text)

    def parse(self) -> Node:
        if self.peek().kind is Tok.EOF:
            return All()
        node = self.or_expression()
        rest = self.peek()
        if rest.kind is not Tok.EOF:
            raise self.error(rest, f"unexpected {rest.describe()} after a complete expression")
        return node

    def or_expression(self) -> Node:
        operands = [self.and_expression()]
        while self.peek().kind is Tok.OR:
            self.take()
            operands.append(self.and_expression())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expression(self) -> Node:
        operands = [self.operation()]
        while self.peek().kind is Tok.AND:
            self.take()
            operands.append(self.operation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def operation(self) -> Node:
        negated = False
        while self.peek().kind is Tok.NOT:
            self.take()
            negated = not negated
        token = self.take()
        if token.kind is Tok.HAS:
            node: Node = Has(token.value)
        elif token.kind is Tok.ALL:
            node = All()
        elif token.kind is Tok.GLOBAL:
            node = Global()
        elif token.kind is Tok.LABEL:
            node = self.label_operation(token)
        elif token.kind is Tok.LPAREN:
            node = self.group(token)
        else:
            raise self.error(token, f"expected an expression, found {token.describe()}")
        return Not(node) if negated else node

    def group(self, lparen: Token) -> Node:
        node = self.or_expression()
        closing = self.take()
        if closing.kind is not Tok.RPAREN:
            raise self.error(
                closing,
                f"expected ')' to close the '(' at column {lparen.pos + 1}, "
                f"found {closing.describe()}",
            )
        return node

    def label_operation(self, label: Token) -> Node:
        operator = self.take()
        if operator.kind in _COMPARE_OPS:
            literal = self.take()
            if literal.kind is not Tok.STRING:
                raise self.error(
                    literal,
                    f"expected a quoted string after {operator.kind.value}, "
                    f"found {literal.describe()}",
                )
            return Compare(label.value, _COMPARE_OPS[operator.kind], literal.value)
        if operator.kind in (Tok.IN, Tok.NOT_IN):
            values = self.set_literal(operator)
            return InSet(label.value, values, negated=operator.kind is Tok.NOT_IN)
        raise self.error(
            operator,
            f'expected an operator after label "{label.value}", found {operator.describe()}',
        )

    def set_literal(self, operator: Token) -> tuple[str, ...]:
        brace = self.take()
        if brace.kind is not Tok.LBRACE:
            raise self.error(
                brace, f"expected '{{' after {operator.kind.value}, found {brace.describe()}"
            )
        values: list[str] = []
        while self.peek().kind is Tok.STRING:
            values.append(self.take().value)
            if self.peek().kind is not Tok.COMMA:
                break
            self.take()
        closing = self.take()
        if closing.kind is not Tok.RBRACE:
            after_value = values and self.tokens[self.index - 2].kind is Tok.STRING
            wanted = "',' or '}'" if after_value else "a quoted string or '}'"
            raise self.error(closing, f"expected {wanted} in set, found {closing.describe()}")
        # ConvertToStringSetInPlace: sorted by byte value (== code point order) and unique.
        return tuple(sorted(set(values)))
