"""`schema.graphql` at the repository root is the printed schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import strawberry
from strawberry.printer import print_schema

from app import cli

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_schema_file_is_the_printed_schema(schema: strawberry.Schema) -> None:
    assert SCHEMA_FILE.read_text() == print_schema(schema) + "\n", (
        "schema.graphql is out of date: run `session-inbox export-schema`"
    )


def test_export_schema_writes_the_printed_schema(
    schema: strawberry.Schema, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "schema.graphql"
    cli.main(["export-schema", "--output", str(output)])
    assert output.read_text() == print_schema(schema) + "\n"
    assert capsys.readouterr().out == f"{output}\n"


def test_export_schema_defaults_to_schema_graphql_in_the_working_directory(
    schema: strawberry.Schema, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli.main(["export-schema"])
    assert (tmp_path / "schema.graphql").read_text() == print_schema(schema) + "\n"
