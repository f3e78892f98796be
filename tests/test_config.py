"""Settings: every variable read, defaults as the contract says, bad values named."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_contract() -> None:
    settings = load_settings(environ={}, env_file=None)
    assert settings == Settings()
    assert settings.database_url == "sqlite:///session-inbox.sqlite3"
    assert settings.redis_url is None
    assert settings.anthropic_api_key is None
    assert settings.anthropic_model == "claude-haiku-4-5"
    assert settings.naming_timeout_s == 8
    assert settings.naming_branch_prefix == ""
    assert settings.run_migrations is True
    assert settings.api_tokens == ()
    assert settings.cors_origins == ("*",)
    assert settings.graphiql is True
    assert settings.introspection is True
    assert settings.max_body_bytes == 1_048_576
    assert (settings.max_query_depth, settings.max_aliases, settings.max_tokens) == (10, 30, 2000)
    assert settings.db_statement_timeout_ms == 5000
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert (settings.log_format, settings.log_level) == ("text", "info")


def test_every_variable_is_read() -> None:
    settings = load_settings(
        environ={
            "DATABASE_URL": "postgres://u@h:5432/db",
            "REDIS_URL": "redis://localhost:6379/0",
            "ANTHROPIC_API_KEY": "sk-test",
            "ANTHROPIC_MODEL": "claude-x",
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:9999",
            "NAMING_TIMEOUT_S": "2.5",
            "NAMING_BRANCH_PREFIX": "claude/",
            "RUN_MIGRATIONS": "false",
            "API_TOKENS": "a, b,,c",
            "CORS_ORIGINS": "https://x.example,https://y.example",
            "GRAPHIQL": "0",
            "INTROSPECTION": "no",
            "MAX_BODY_BYTES": "2048",
            "MAX_QUERY_DEPTH": "5",
            "MAX_ALIASES": "7",
            "MAX_TOKENS": "900",
            "DB_STATEMENT_TIMEOUT_MS": "250",
            "HOST": "0.0.0.0",
            "PORT": "9000",
            "LOG_FORMAT": "JSON",
            "LOG_LEVEL": "debug",
        },
        env_file=None,
    )
    assert settings.is_postgres
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.anthropic_api_key == "sk-test"
    assert settings.anthropic_model == "claude-x"
    assert settings.anthropic_base_url == "http://127.0.0.1:9999"
    assert settings.naming_timeout_s == 2.5
    assert settings.naming_branch_prefix == "claude/"
    assert settings.run_migrations is False
    assert settings.api_tokens == ("a", "b", "c")
    assert settings.cors_origins == ("https://x.example", "https://y.example")
    assert settings.graphiql is False
    assert settings.introspection is False
    assert settings.max_body_bytes == 2048
    assert (settings.max_query_depth, settings.max_aliases, settings.max_tokens) == (5, 7, 900)
    assert settings.db_statement_timeout_ms == 250
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert (settings.log_format, settings.log_level) == ("json", "debug")


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=9100\nANTHROPIC_MODEL=from-file\n")
    settings = load_settings(environ={"PORT": "9200"}, env_file=env_file)
    assert settings.port == 9200
    assert settings.anthropic_model == "from-file"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "sqlite:///:memory:"),
        ("NAMING_BRANCH_PREFIX", "bad..prefix"),
        ("NAMING_BRANCH_PREFIX", "-x/"),
        ("REDIS_URL", "localhost:6379"),
        ("NAMING_TIMEOUT_S", "soon"),
        ("NAMING_TIMEOUT_S", "-1"),
        ("RUN_MIGRATIONS", "maybe"),
        ("MAX_BODY_BYTES", "1e6"),
        ("MAX_QUERY_DEPTH", "0"),
        ("PORT", "70000"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings(environ={key: value}, env_file=None)


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    keys = {line.split("=", 1)[0].lstrip("# ") for line in text.splitlines() if "=" in line}
    # Each setting is read from the variable named as its field, upper-cased.
    expected = {field.name.upper() for field in dataclasses.fields(Settings)}
    assert keys == expected


def test_jwt_settings_go_together() -> None:
    env = {
        "AUTH_JWKS_URL": "https://idp.example/certs",
        "AUTH_ISSUER": "https://idp.example",
        "AUTH_AUDIENCE": "inbox",
    }
    settings = load_settings(env, env_file=None)
    assert (settings.auth_jwks_url, settings.auth_issuer, settings.auth_audience) == (
        "https://idp.example/certs",
        "https://idp.example",
        "inbox",
    )
    with pytest.raises(ConfigError, match="AUTH_AUDIENCE"):
        load_settings({**env, "AUTH_AUDIENCE": ""}, env_file=None)
    with pytest.raises(ConfigError, match="AUTH_JWKS_URL"):
        load_settings({**env, "AUTH_JWKS_URL": "ftp://idp.example/certs"}, env_file=None)


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("MAX_SELECTION_FIELDS", "0"),
        ("MAX_FIELDS", "many"),
        ("MAX_HEADER_BYTES", "100"),
        ("MAX_HEADERS", "2"),
    ],
)
def test_a_limit_out_of_range_names_its_variable(key: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=key):
        load_settings({key: raw}, env_file=None)


def test_server_refuses_to_start_with_a_bad_value(tmp_path: Path) -> None:
    env = {**os.environ, "PORT": "not-a-port"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "session-inbox"), "serve"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "PORT" in result.stderr
