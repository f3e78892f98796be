"""The shape of the code that the issue tracker asks to keep: no SQL built by f-string, SQL only
in the store, and no module of app/ much past 300 lines without saying why."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"
MODULES = sorted(APP.rglob("*.py"))
# Words that start or shape a statement; "select" alone is too common in prose.
SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|WITH\s+RECURSIVE|"
    r"pg_advisory|ORDER\s+BY|FOR\s+NO\s+KEY)\b",
    re.IGNORECASE | re.DOTALL,
)
# The rooms where SQL may be written: the store, the database handle, and the migration runner
# (which takes Piccolo's migration lock).
SQL_ROOMS = ("store/", "db.py", "migrate.py")
# The one module that writes its statements as text: it turns a query plan into SQL text made
# once per shape, where Piccolo's QueryString would compile anew per request. What it puts in
# its f-strings is only ever its own aliases, column names of the schema, integers and `$n`
# placeholders; every value a client gives is a parameter.
F_STRING_SQL = ("store/json_reads.py",)


def _name(path: Path) -> str:
    return path.relative_to(APP).as_posix()


def _docstrings(tree: ast.AST) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }


def _strings(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """Every string constant and f-string in `tree` but docstrings: (line, text, f-string?).
    An f-string's constant parts are read as one text, its fields as `{}`."""
    skip = _docstrings(tree)
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found: list[tuple[int, str, bool]] = []
    for node in ast.walk(tree):
        if id(node) in skip or id(node) in parts:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                str(part.value) if isinstance(part, ast.Constant) else "{}" for part in node.values
            )
            found.append((node.lineno, text, True))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value, False))
    return found


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_no_sql_is_built_by_f_string_nor_outside_the_store(path: Path) -> None:
    in_room = _name(path).startswith(SQL_ROOMS)
    for line, text, is_f_string in _strings(ast.parse(path.read_text())):
        if SQL.search(text):
            if _name(path) not in F_STRING_SQL:
                assert not is_f_string, f"{_name(path)}:{line} builds SQL with an f-string"
            assert in_room, f"{_name(path)}:{line} holds SQL outside the store"


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_a_long_module_says_why_in_its_docstring(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    if lines <= 320:
        return
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    assert re.search(r"\blong|\blength", docstring), (
        f"{_name(path)} has {lines} lines and gives no reason"
    )
