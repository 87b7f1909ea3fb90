"""`column IN (a list bound at execution)` whose SQL text does not depend on the list's length.

SQLAlchemy's expanding IN writes one placeholder per value: each length is a new statement for the database to
plan (PostgreSQL cannot reuse a prepared one) and for SQLAlchemy to rewrite on every execution, which on a dispute
lookup's reads of a few hundred sequence numbers cost more than running them (bench/, 1M-entry log). On
PostgreSQL the list is one array parameter (`= ANY(...)`). SQLite keeps the expanded list (see below).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Boolean, String, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.type_api import TypeEngine
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import TypeDecorator


class ValueList(TypeDecorator[Sequence[Any]]):
    """A list parameter: an array of the column's type on PostgreSQL."""

    impl = String
    cache_ok = True

    def __init__(self, item_type: TypeEngine[Any]) -> None:
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(self.item_type))
        return dialect.type_descriptor(String())

    def process_bind_param(self, value: Sequence[Any] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return list(value)


class MemberOf(ColumnElement[bool]):
    """`column` is one of the values bound to `name` (see the module docstring)."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a comparison: never written as `(...) = 1` where booleans are integers
    _traverse_internals = [  # noqa: RUF012 - SQLAlchemy's cache-key declaration, a class attribute
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], name: str) -> None:
        self.column = column
        self.values = bindparam(name, type_=ValueList(column.type))


@compiles(MemberOf, "postgresql")
def _any_of_array(element: MemberOf, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{compiler.process(element.column, **kw)} = ANY ({compiler.process(element.values, **kw)})"


@compiles(MemberOf)
def _in_expanded_list(element: MemberOf, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite: its planner makes a scan of `IN (SELECT value FROM json_each(?))` (it cannot tell how many values
    # there are), so here the list is expanded after all; SQLite plans a statement in microseconds.
    expanded = element.column.in_(bindparam(element.values.key, expanding=True))
    return str(compiler.process(expanded, **kw))


def member_of(column: ColumnElement[Any], name: str) -> MemberOf:
    return MemberOf(column, name)
