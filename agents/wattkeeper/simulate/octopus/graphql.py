"""Just enough GraphQL to serve Kraken's documents: parse, bind variables, shape answers.

Kraken is a graphene (graphql-core) server. This module reads the same documents the
agent and other clients send (operations, variables with defaults, aliases, nested
selections, literal arguments) and reports mistakes the way graphql-core words them,
so a client bug shows up here as it would against the real API. Fragments and
directives are refused: no Kraken client we imitate sends them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class GraphQLSyntaxError(Exception):
    """The document is not GraphQL (or uses what this server does not support)."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class ValidationError(Exception):
    """The document is GraphQL but does not fit the schema or its variables."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


_TOKEN = re.compile(
    r"""
    (?P<ignored>[\s,\ufeff]+|\#[^\n\r]*)
  | (?P<spread>\.\.\.)
  | (?P<punct>[!$()\:=@\[\]{}|&])
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<number>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
  | (?P<block>\"\"\"(?:\\\"\"\"|[^"]|"(?!""))*\"\"\")
  | (?P<string>"(?:\\["\\/bfnrt]|\\u[0-9A-Fa-f]{4}|[^"\\\n\r])*")
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


@dataclass
class Token:
    kind: str
    text: str
    line: int
    column: int


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise GraphQLSyntaxError(
                f"Syntax Error: Unexpected character: {source[pos]!r}.", line, pos - line_start + 1
            )
        kind = m.lastgroup or ""
        if kind != "ignored":
            tokens.append(Token(kind, m.group(), line, pos - line_start + 1))
        text = m.group()
        newlines = text.count("\n")
        if newlines:
            line += newlines
            line_start = pos + text.rfind("\n") + 1
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens


def _unquote(text: str) -> str:
    if text.startswith('"""'):
        return text[3:-3].replace('\\"""', '"""')
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            if nxt == "u":
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
                continue
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


# -- the syntax tree -----------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class EnumValue:
    name: str


@dataclass
class TypeRef:
    name: str  # for a list: the item's TypeRef in ``of``
    non_null: bool = False
    of: TypeRef | None = None

    def __str__(self) -> str:
        inner = f"[{self.of}]" if self.of is not None else self.name
        return inner + ("!" if self.non_null else "")


@dataclass
class VariableDef:
    name: str
    type: TypeRef
    default: Any = None
    has_default: bool = False
    line: int = 1
    column: int = 1


@dataclass
class Field:
    name: str
    alias: str | None
    arguments: dict[str, Any]
    selections: list[Field]
    line: int
    column: int

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class Operation:
    kind: str  # "query" or "mutation"
    name: str | None
    variables: list[VariableDef] = field(default_factory=list)
    selections: list[Field] = field(default_factory=list)


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _fail(self, expected: str) -> GraphQLSyntaxError:
        t = self.tok
        got = "<EOF>" if t.kind == "eof" else f'"{t.text}"'
        return GraphQLSyntaxError(
            f"Syntax Error: Expected {expected}, found {got}.", t.line, t.column
        )

    def peek(self, text: str) -> bool:
        return self.tok.kind in ("punct", "name", "spread") and self.tok.text == text

    def expect(self, text: str) -> Token:
        if not self.peek(text):
            raise self._fail(f'"{text}"')
        t = self.tok
        self.i += 1
        return t

    def name(self) -> Token:
        if self.tok.kind != "name":
            raise self._fail("Name")
        t = self.tok
        self.i += 1
        return t

    def document(self) -> list[Operation]:
        ops = []
        while self.tok.kind != "eof":
            ops.append(self.operation())
        if not ops:
            raise self._fail("an operation")
        return ops

    def operation(self) -> Operation:
        if self.peek("{"):
            return Operation("query", None, [], self.selection_set())
        t = self.name()
        if t.text == "fragment":
            raise GraphQLSyntaxError("fragments are not supported here", t.line, t.column)
        if t.text not in ("query", "mutation"):
            raise GraphQLSyntaxError(f'Syntax Error: Unexpected Name "{t.text}".', t.line, t.column)
        name = self.name().text if self.tok.kind == "name" else None
        variables = self.variable_defs() if self.peek("(") else []
        self.no_directives()
        return Operation(t.text, name, variables, self.selection_set())

    def no_directives(self) -> None:
        if self.peek("@"):
            raise GraphQLSyntaxError(
                "directives are not supported here", self.tok.line, self.tok.column
            )

    def variable_defs(self) -> list[VariableDef]:
        self.expect("(")
        defs = []
        while not self.peek(")"):
            start = self.expect("$")
            name = self.name().text
            self.expect(":")
            tref = self.type_ref()
            vd = VariableDef(name, tref, line=start.line, column=start.column)
            if self.peek("="):
                self.i += 1
                vd.default, vd.has_default = self.value(const=True), True
            defs.append(vd)
        self.expect(")")
        return defs

    def type_ref(self) -> TypeRef:
        if self.peek("["):
            self.i += 1
            inner = self.type_ref()
            self.expect("]")
            t = TypeRef("list", of=inner)
        else:
            t = TypeRef(self.name().text)
        if self.peek("!"):
            self.i += 1
            t.non_null = True
        return t

    def selection_set(self) -> list[Field]:
        self.expect("{")
        fields = []
        while not self.peek("}"):
            if self.tok.kind == "spread":
                raise GraphQLSyntaxError(
                    "fragments are not supported here", self.tok.line, self.tok.column
                )
            fields.append(self.field())
        self.expect("}")
        return fields

    def field(self) -> Field:
        first = self.name()
        alias, name = None, first.text
        if self.peek(":"):
            self.i += 1
            alias, name = first.text, self.name().text
        args: dict[str, Any] = {}
        if self.peek("("):
            self.i += 1
            while not self.peek(")"):
                key = self.name().text
                self.expect(":")
                args[key] = self.value(const=False)
            self.expect(")")
        self.no_directives()
        subs = self.selection_set() if self.peek("{") else []
        return Field(name, alias, args, subs, first.line, first.column)

    def value(self, const: bool) -> Any:
        t = self.tok
        if t.kind == "punct" and t.text == "$" and not const:
            self.i += 1
            return Variable(self.name().text)
        if t.kind == "punct" and t.text == "[":
            self.i += 1
            items = []
            while not self.peek("]"):
                items.append(self.value(const))
            self.i += 1
            return items
        if t.kind == "punct" and t.text == "{":
            self.i += 1
            obj = {}
            while not self.peek("}"):
                key = self.name().text
                self.expect(":")
                obj[key] = self.value(const)
            self.i += 1
            return obj
        self.i += 1
        if t.kind == "number":
            return float(t.text) if any(c in t.text for c in ".eE") else int(t.text)
        if t.kind in ("string", "block"):
            return _unquote(t.text)
        if t.kind == "name":
            return {"true": True, "false": False, "null": None}.get(t.text, EnumValue(t.text))
        self.i -= 1
        raise self._fail("a value")


def parse(source: str) -> list[Operation]:
    """The operations of a document; GraphQLSyntaxError with line and column otherwise."""
    return _Parser(source).document()


def select_operation(ops: list[Operation], name: str | None) -> Operation:
    if name:
        for op in ops:
            if op.name == name:
                return op
        raise ValidationError(f"Unknown operation named '{name}'.")
    if len(ops) > 1:
        raise ValidationError("Must provide operation name if query contains multiple operations.")
    return ops[0]


# -- variables and arguments ---------------------------------------------------------------

Coercer = Callable[[Any], Any]


def bind_variables(
    op: Operation, given: dict[str, Any], scalars: dict[str, Coercer]
) -> dict[str, Any]:
    """Check the request's variables against the operation's definitions (graphql-core words)."""
    out: dict[str, Any] = {}
    for vd in op.variables:
        if vd.name not in given and not vd.has_default:
            if vd.type.non_null:
                raise ValidationError(
                    f"Variable '${vd.name}' of required type '{vd.type}' was not provided.",
                    vd.line,
                    vd.column,
                )
            continue
        value = given.get(vd.name, vd.default)
        try:
            out[vd.name] = _coerce(value, vd.type, scalars)
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"Variable '${vd.name}' got invalid value {_show(value)}; {exc}",
                vd.line,
                vd.column,
            ) from None
    return out


def _coerce(value: Any, tref: TypeRef, scalars: dict[str, Coercer]) -> Any:
    if value is None:
        if tref.non_null:
            raise ValueError(f"Expected non-nullable type '{tref}' not to be null.")
        return None
    if tref.of is not None:
        items = value if isinstance(value, list) else [value]
        return [_coerce(v, tref.of, scalars) for v in items]
    fn = scalars.get(tref.name) or BUILTIN_SCALARS.get(tref.name)
    if fn is None:
        raise ValueError(f"Unknown type '{tref.name}'.")
    return fn(value)


def _builtin(name: str, ok: Callable[[Any], bool]) -> Coercer:
    def check(value: Any) -> Any:
        if not ok(value):
            raise ValueError(f"{name} cannot represent a non {name.lower()} value: {_show(value)}")
        return value

    return check


BUILTIN_SCALARS: dict[str, Coercer] = {
    "String": _builtin("String", lambda v: isinstance(v, str)),
    "ID": _builtin("ID", lambda v: isinstance(v, str | int) and not isinstance(v, bool)),
    "Boolean": _builtin("Boolean", lambda v: isinstance(v, bool)),
    "Int": _builtin("Int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
}


def _show(value: Any) -> str:
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def resolve_value(value: Any, variables: dict[str, Any]) -> Any:
    """An argument with its variables substituted (enums as their names)."""
    if isinstance(value, Variable):
        return variables.get(value.name)
    if isinstance(value, EnumValue):
        return value.name
    if isinstance(value, list):
        return [resolve_value(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve_value(v, variables) for k, v in value.items()}
    return value


def check_variable_use(op: Operation) -> None:
    """Every variable used is declared, and every declared one is used (graphql-core)."""
    declared = {vd.name for vd in op.variables}
    used: set[str] = set()
    for name, f in _variables_used(op):
        used.add(name)
        if name not in declared:
            raise ValidationError(f"Variable '${name}' is not defined.", f.line, f.column)
    for vd in op.variables:
        if vd.name not in used:
            where = f" in operation '{op.name}'" if op.name else ""
            raise ValidationError(
                f"Variable '${vd.name}' is never used{where}.", vd.line, vd.column
            )


def _variables_used(op: Operation) -> list[tuple[str, Field]]:
    """Every variable an argument refers to, with its field."""
    found: list[tuple[str, Field]] = []

    def walk_value(v: Any, f: Field) -> None:
        if isinstance(v, Variable):
            found.append((v.name, f))
        elif isinstance(v, list):
            for x in v:
                walk_value(x, f)
        elif isinstance(v, dict):
            for x in v.values():
                walk_value(x, f)

    def walk(fields: list[Field]) -> None:
        for f in fields:
            for v in f.arguments.values():
                walk_value(v, f)
            walk(f.selections)

    walk(op.selections)
    return found


# -- shaping answers -----------------------------------------------------------------------

# type name -> field -> (type name, is list); a type absent here is a scalar (a leaf).
Schema = dict[str, dict[str, tuple[str, bool]]]


def validate_selections(schema: Schema, type_name: str, fields: list[Field]) -> None:
    """Every selected field exists; objects have a selection, scalars have none."""
    known = schema[type_name]
    for f in fields:
        if f.name == "__typename":
            continue
        if f.name not in known:
            raise ValidationError(
                f"Cannot query field '{f.name}' on type '{type_name}'.", f.line, f.column
            )
        child, _ = known[f.name]
        if child in schema and not f.selections:
            raise ValidationError(
                f"Field '{f.name}' of type '{child}' must have a selection of subfields."
                f" Did you mean '{f.name} {{ ... }}'?",
                f.line,
                f.column,
            )
        if child not in schema and f.selections:
            raise ValidationError(
                f"Field '{f.name}' must not have a selection since type '{child}'"
                " has no subfields.",
                f.line,
                f.column,
            )
        if child in schema:
            validate_selections(schema, child, f.selections)


def shape(
    schema: Schema, value: Any, fields: list[Field], type_name: str, variables: dict[str, Any]
) -> Any:
    """Keep only the selected fields (under their aliases); callables take the arguments."""
    if value is None:
        return None
    if isinstance(value, list):
        return [shape(schema, v, fields, type_name, variables) for v in value]
    out: dict[str, Any] = {}
    for f in fields:
        if f.name == "__typename":
            out[f.key] = type_name
            continue
        raw = value.get(f.name) if isinstance(value, dict) else None
        if callable(raw):
            raw = raw(**{k: resolve_value(v, variables) for k, v in f.arguments.items()})
        if f.selections:
            out[f.key] = shape(schema, raw, f.selections, schema[type_name][f.name][0], variables)
        else:
            out[f.key] = raw
    return out
