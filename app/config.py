"""Settings: the only module that reads the environment.

Every variable of the contract's configuration table is read here once, from the process
environment or a `.env` file in the working directory (the environment wins). A bad value raises
`ConfigError` naming the variable and what was expected, so a misconfigured server stops at start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_LOG_FORMATS = ("text", "json")
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(ValueError):
    """A configuration variable has a value the server cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "sqlite:///session-inbox.sqlite3"
    redis_url: str | None = None
    # Events the log keeps for subscribers that resume (`after`).
    event_retention: int = 100_000
    anthropic_api_key: str | None = None
    anthropic_model: str = "claude-haiku-4-5"
    anthropic_base_url: str | None = None
    naming_timeout_s: float = 8.0
    naming_branch_prefix: str = ""
    run_migrations: bool = True
    api_tokens: tuple[str, ...] = ()
    # Bearer JWTs: the key set's URL, and the issuer and audience a token must name (all three,
    # or none).
    auth_jwks_url: str | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    cors_origins: tuple[str, ...] = ("*",)
    graphiql: bool = True
    introspection: bool = True
    # Queries answered by one SQL statement once seen (PostgreSQL; `app.graphql.compiled`).
    compiled_reads: bool = True
    max_body_bytes: int = 1_048_576
    max_query_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2000
    # Fields in one GraphQL selection set and in the whole document, fragments counted where
    # they are spread.
    max_selection_fields: int = 100
    max_fields: int = 500
    # The request line and headers of one HTTP request, in bytes, and how many headers it has.
    max_header_bytes: int = 32_768
    max_headers: int = 100
    db_statement_timeout_ms: int = 5000
    host: str = "127.0.0.1"
    port: int = 8000
    log_format: str = "text"
    log_level: str = "info"

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))

    @property
    def sqlite_path(self) -> str:
        """The file path of a `sqlite:///path` URL."""
        return self.database_url.removeprefix("sqlite:///")


def _bool(key: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{key} must be true or false, got {raw!r}")


def _int(key: str, raw: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{key} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{key} must be {bound}, got {value}")
    return value


def _float(key: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{key} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 3600:
        raise ConfigError(f"{key} must be greater than 0 and at most 3600, got {raw!r}")
    return value


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _choice(key: str, raw: str, choices: tuple[str, ...]) -> str:
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {raw!r}")
    return value


def _database_url(key: str, raw: str) -> str:
    value = raw.strip()
    if value.startswith(("postgres://", "postgresql://")):
        return value
    path = value.removeprefix("sqlite:///")
    if value.startswith("sqlite:///") and path and not path.startswith(":memory:"):
        return value
    raise ConfigError(f"{key} must be postgres://… or sqlite:///path/to/file, got {raw!r}")


def _branch_prefix(key: str, raw: str) -> str:
    from app.naming.names import is_valid_branch  # here: app.naming itself reads Settings

    value = raw.strip()
    if not is_valid_branch(f"{value}x"):
        raise ConfigError(f"{key} must be able to start a git branch name, got {raw!r}")
    return value


def _redis_url(key: str, raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{key} must be redis://…, rediss://… or unix://…, got {raw!r}")
    return value


def _http_url(key: str, raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("https://", "http://")):
        raise ConfigError(f"{key} must be https://… or http://…, got {raw!r}")
    return value


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Settings:
    """Read the settings from `environ` (default: the process environment) over `env_file`."""
    source: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    source.update(os.environ if environ is None else environ)

    def get(key: str, parse: Callable[[str, str], T], default: T) -> T:
        raw = source.get(key)
        if raw is None or raw.strip() == "":
            return default
        return parse(key, raw)

    defaults = Settings()
    settings = Settings(
        database_url=get("DATABASE_URL", _database_url, defaults.database_url),
        redis_url=get("REDIS_URL", _redis_url, None),
        event_retention=get(
            "EVENT_RETENTION", lambda k, v: _int(k, v, minimum=1), defaults.event_retention
        ),
        anthropic_api_key=get("ANTHROPIC_API_KEY", lambda _k, v: v.strip(), None),
        anthropic_model=get("ANTHROPIC_MODEL", lambda _k, v: v.strip(), defaults.anthropic_model),
        anthropic_base_url=get("ANTHROPIC_BASE_URL", lambda _k, v: v.strip(), None),
        naming_timeout_s=get("NAMING_TIMEOUT_S", _float, defaults.naming_timeout_s),
        naming_branch_prefix=get("NAMING_BRANCH_PREFIX", _branch_prefix, ""),
        run_migrations=get("RUN_MIGRATIONS", _bool, True),
        api_tokens=get("API_TOKENS", lambda _k, v: _csv(v), ()),
        auth_jwks_url=get("AUTH_JWKS_URL", _http_url, None),
        auth_issuer=get("AUTH_ISSUER", lambda _k, v: v.strip(), None),
        auth_audience=get("AUTH_AUDIENCE", lambda _k, v: v.strip(), None),
        cors_origins=get("CORS_ORIGINS", lambda _k, v: _csv(v), defaults.cors_origins),
        graphiql=get("GRAPHIQL", _bool, True),
        introspection=get("INTROSPECTION", _bool, True),
        compiled_reads=get("COMPILED_READS", _bool, True),
        max_body_bytes=get(
            "MAX_BODY_BYTES", lambda k, v: _int(k, v, minimum=1024), defaults.max_body_bytes
        ),
        max_query_depth=get(
            "MAX_QUERY_DEPTH", lambda k, v: _int(k, v, minimum=1), defaults.max_query_depth
        ),
        max_aliases=get("MAX_ALIASES", lambda k, v: _int(k, v, minimum=1), defaults.max_aliases),
        max_tokens=get("MAX_TOKENS", lambda k, v: _int(k, v, minimum=10), defaults.max_tokens),
        max_selection_fields=get(
            "MAX_SELECTION_FIELDS",
            lambda k, v: _int(k, v, minimum=1),
            defaults.max_selection_fields,
        ),
        max_fields=get("MAX_FIELDS", lambda k, v: _int(k, v, minimum=1), defaults.max_fields),
        max_header_bytes=get(
            "MAX_HEADER_BYTES", lambda k, v: _int(k, v, minimum=1024), defaults.max_header_bytes
        ),
        max_headers=get("MAX_HEADERS", lambda k, v: _int(k, v, minimum=8), defaults.max_headers),
        db_statement_timeout_ms=get(
            "DB_STATEMENT_TIMEOUT_MS",
            lambda k, v: _int(k, v, minimum=0),
            defaults.db_statement_timeout_ms,
        ),
        host=get("HOST", lambda _k, v: v.strip(), defaults.host),
        port=get("PORT", lambda k, v: _int(k, v, minimum=0, maximum=65535), defaults.port),
        log_format=get("LOG_FORMAT", lambda k, v: _choice(k, v, _LOG_FORMATS), "text"),
        log_level=get("LOG_LEVEL", lambda k, v: _choice(k, v, _LOG_LEVELS), "info"),
    )
    jwt = {
        "AUTH_JWKS_URL": settings.auth_jwks_url,
        "AUTH_ISSUER": settings.auth_issuer,
        "AUTH_AUDIENCE": settings.auth_audience,
    }
    if any(jwt.values()) and not all(jwt.values()):
        missing = ", ".join(key for key, value in jwt.items() if not value)
        raise ConfigError(
            f"AUTH_JWKS_URL, AUTH_ISSUER and AUTH_AUDIENCE go together: {missing} unset"
        )
    return settings
