"""A reader of PromQL expressions into a syntax tree, for the checks of the rules and the
dashboard (tests/deploy/prometheus_support.py): which series an expression selects, with which
label matchers, and which label names its `by`, `without`, `on`, `ignoring` and `group_*`
clauses name.

promtool tells whether an expression parses, not what it refers to, and Python has no PromQL
parser among our dependencies; this one covers the language as the Prometheus documentation
describes it (selectors, ranges, subqueries, `offset`, `@`, functions, aggregations with their
clause before or after the arguments, binary operators with their precedence and vector
matching), and refuses anything else rather than guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

AGGREGATIONS = frozenset({
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio"})
SET_OPERATORS = frozenset({"and", "or", "unless"})
COMPARISONS = frozenset({"==", "!=", "<=", "<", ">=", ">"})
# lowest first; `^` binds right to left, every other level left to right
PRECEDENCE = (frozenset({"or"}), frozenset({"and", "unless"}), COMPARISONS,
              frozenset({"+", "-"}), frozenset({"*", "/", "%", "atan2"}), frozenset({"^"}))
KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                      "offset"}) | SET_OPERATORS

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)(?![\w.])
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_:][\w:]*)
  | (?P<operator>=~|!~|==|!=|<=|>=|[-+*/%^<>=(){}\[\],:@])
""", re.VERBOSE)


class PromQLError(ValueError):
    pass


@dataclass(frozen=True)
class Matcher:
    label: str
    operator: str
    value: str


@dataclass(frozen=True)
class Selector:
    """`name{matchers}` (name "" for `{...}` alone)."""
    name: str
    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class Number:
    value: str


@dataclass(frozen=True)
class String:
    value: str


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Expression, ...]


@dataclass(frozen=True)
class Aggregation:
    operator: str
    args: tuple[Expression, ...]
    grouping: str | None = None  # "by" or "without"
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Matching:
    """A binary operator's vector matching: `on`/`ignoring` (None: all labels) and
    `group_left`/`group_right` with the labels it includes."""
    on: bool | None = None
    labels: tuple[str, ...] = ()
    group: str | None = None
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Binary:
    operator: str
    left: Expression
    right: Expression
    matching: Matching = field(default_factory=Matching)
    returns_bool: bool = False


@dataclass(frozen=True)
class Unary:
    operator: str
    operand: Expression


@dataclass(frozen=True)
class Modified:
    """An expression with a range, a subquery's range and step, `offset` or `@`: none of
    them changes which series or labels it has."""
    operand: Expression


Expression = Selector | Number | String | Call | Aggregation | Binary | Unary | Modified


def parse(text: str) -> Expression:
    parser = _Parser(_tokens(text))
    expression = parser.expression()
    parser.end()
    return expression


def walk(expression: Expression) -> list[Expression]:
    """The expression and every expression inside it, outermost first."""
    found: list[Expression] = [expression]
    if isinstance(expression, Call | Aggregation):
        for arg in expression.args:
            found += walk(arg)
    elif isinstance(expression, Binary):
        found += walk(expression.left) + walk(expression.right)
    elif isinstance(expression, Unary | Modified):
        found += walk(expression.operand)
    return found


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise PromQLError(f"cannot read {text[position:position + 20]!r} in {text!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self._tokens = tokens
        self._at = 0

    # --- tokens ---

    def _peek(self, ahead: int = 0) -> tuple[str, str]:
        index = self._at + ahead
        return self._tokens[index] if index < len(self._tokens) else ("end", "")

    def _next(self) -> tuple[str, str]:
        token = self._peek()
        self._at += 1
        return token

    def _is(self, value: str) -> bool:
        kind, text = self._peek()
        return text == value if kind == "operator" else kind == "name" and text == value

    def _take(self, value: str) -> None:
        if not self._is(value):
            raise PromQLError(f"expected {value!r}, found {self._peek()[1]!r}")
        self._at += 1

    def end(self) -> None:
        if self._peek()[0] != "end":
            raise PromQLError(f"unexpected {self._peek()[1]!r}")

    # --- expressions ---

    def expression(self, level: int = 0) -> Expression:
        if level == len(PRECEDENCE):
            return self._unary()
        left = self.expression(level + 1)
        while self._peek()[1] in PRECEDENCE[level] and self._peek()[0] in ("operator", "name"):
            operator = self._next()[1]
            returns_bool = False
            if self._is("bool"):
                self._at += 1
                returns_bool = True
            matching = self._matching()
            # `^` is right-associative: its right side may hold another `^`
            right = self.expression(level if operator == "^" else level + 1)
            left = Binary(operator, left, right, matching, returns_bool)
            if operator == "^":
                break
        return left

    def _matching(self) -> Matching:
        if not (self._is("on") or self._is("ignoring")):
            return Matching()
        on = self._next()[1] == "on"
        labels = self._label_list()
        if self._is("group_left") or self._is("group_right"):
            group = self._next()[1]
            include = self._label_list() if self._is("(") else ()
            return Matching(on, labels, group, include)
        return Matching(on, labels)

    def _unary(self) -> Expression:
        if self._is("-") or self._is("+"):
            return Unary(self._next()[1], self._unary())
        return self._postfix(self._primary())

    def _postfix(self, expression: Expression) -> Expression:
        while True:
            if self._is("["):  # a range, or a subquery's range and step
                self._at += 1
                while not self._is("]"):
                    if self._peek()[0] == "end":
                        raise PromQLError("unclosed [")
                    self._at += 1
                self._at += 1
            elif self._is("offset"):
                self._at += 1
                if self._is("-"):
                    self._at += 1
                self._next()
            elif self._is("@"):
                self._at += 1
                if self._peek()[1] in ("start", "end"):
                    self._take(self._peek()[1])
                    self._take("(")
                    self._take(")")
                else:
                    self._next()
            else:
                return expression
            expression = Modified(expression)

    def _primary(self) -> Expression:
        kind, text = self._peek()
        if kind == "number" or (kind == "name" and text.lower() in ("inf", "nan")):
            self._at += 1
            return Number(text)
        if kind == "string":
            self._at += 1
            return String(text[1:-1])
        if self._is("("):
            self._at += 1
            inner = self.expression()
            self._take(")")
            return inner
        if self._is("{"):
            return Selector("", self._matchers())
        if kind == "name" and text not in KEYWORDS:
            self._at += 1
            if text in AGGREGATIONS and (self._is("(") or self._is("by")
                                          or self._is("without")):
                return self._aggregation(text)
            if self._is("("):
                return Call(text, self._arguments())
            return Selector(text, self._matchers() if self._is("{") else ())
        raise PromQLError(f"unexpected {text!r}")

    def _aggregation(self, operator: str) -> Aggregation:
        grouping, labels = self._grouping()
        args = self._arguments()
        if grouping is None:
            grouping, labels = self._grouping()
        return Aggregation(operator, args, grouping, labels)

    def _grouping(self) -> tuple[str | None, tuple[str, ...]]:
        if self._is("by") or self._is("without"):
            return self._next()[1], self._label_list()
        return None, ()

    def _arguments(self) -> tuple[Expression, ...]:
        self._take("(")
        args: list[Expression] = []
        while not self._is(")"):
            args.append(self.expression())
            if not self._is(")"):
                self._take(",")
        self._take(")")
        return tuple(args)

    def _label_list(self) -> tuple[str, ...]:
        self._take("(")
        labels: list[str] = []
        while not self._is(")"):
            kind, text = self._next()
            if kind != "name":
                raise PromQLError(f"expected a label name, found {text!r}")
            labels.append(text)
            if not self._is(")"):
                self._take(",")
        self._take(")")
        return tuple(labels)

    def _matchers(self) -> tuple[Matcher, ...]:
        self._take("{")
        matchers: list[Matcher] = []
        while not self._is("}"):
            kind, label = self._next()
            operator = self._next()[1]
            value_kind, value = self._next()
            if kind != "name" or operator not in ("=", "!=", "=~", "!~") \
                    or value_kind != "string":
                raise PromQLError(f"bad label matcher at {label!r}")
            matchers.append(Matcher(label, operator, value[1:-1]))
            if not self._is("}"):
                self._take(",")
        self._take("}")
        return tuple(matchers)
