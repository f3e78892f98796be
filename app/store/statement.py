"""Statements composed once with Piccolo's `QueryString`, compiled once per dialect, and bound to
their values each time they run.

Composing and compiling a `QueryString` walks its whole tree (tens of microseconds for a
`SELECT` of every column); a `Statement` does it on first use for each dialect and keeps the SQL,
so running one costs a list of its values. The values a statement takes at run time are written
as `Param`s where they go; anything else (columns, nested `QueryString`s) is part of its text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from piccolo.querystring import QueryString

from app.store.dialect import Dialect


class Param:
    """A value given by name when the statement runs."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return "Param(" + repr(self.name) + ")"


class Bound(QueryString):
    """A compiled statement with its values, which Piccolo's engines run like any `QueryString`:
    its compiled form is frozen, so nothing is parsed again."""

    __slots__ = ()

    def __init__(self, sql: str, values: list[Any]) -> None:
        # Nothing to process: the text and the values are final.
        self.template = sql
        self.args = ()
        self.columns = ()
        self.query_type = "generic"
        self.table = None
        self._alias = None
        self._frozen_compiled_strings = (sql, values)

    @property
    def sql(self) -> str:
        return self.template

    def __str__(self) -> str:
        return self.template

    def __contains__(self, text: str) -> bool:
        """Whether the statement's SQL holds `text`, as in `"count(" in statement`."""
        return text in self.template


class Statement:
    """A statement built by `build` for a dialect, compiled on first use for that dialect."""

    __slots__ = ("_build", "_compiled")

    def __init__(self, build: Callable[[Dialect], QueryString]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[str, ...]]] = {}

    def compiled(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The SQL for `dialect` and the names of the values it takes, in placeholder order."""
        compiled = self._compiled.get(dialect.engine_type)
        if compiled is None:
            sql, args = self._build(dialect).compile_string(engine_type=dialect.engine_type)
            for arg in args:
                if not isinstance(arg, Param):
                    raise TypeError("a statement takes its values as Params, not " + repr(arg))
            compiled = self._compiled[dialect.engine_type] = (sql, tuple(a.name for a in args))
        return compiled

    def bind(self, dialect: Dialect, /, **values: Any) -> Bound:
        """The statement for `dialect` with `values` in place (names it does not use are
        ignored)."""
        sql, names = self.compiled(dialect)
        return Bound(sql, [values[name] for name in names])


def statement(build: Callable[[Dialect], QueryString]) -> Statement:
    """`Statement(build)`, as a decorator over the function that builds it."""
    return Statement(build)
