"""The only room with SQL. Statements are composed with Piccolo's `QueryString` over the table's
columns (`schema`), compiled once per dialect (`statement`), and run by `SessionStore`
(`sessions`) with typed arguments, returning typed rows. What PostgreSQL and SQLite say
differently (`dialect`) and which constraint refused a write (`errors`) stay in here; every rule
about sessions is the service's."""

from app.store.errors import Conflict, Constraint
from app.store.sessions import PARENT_LOCK, Ancestry, Idempotent, SessionStore

__all__ = ["PARENT_LOCK", "Ancestry", "Conflict", "Constraint", "Idempotent", "SessionStore"]
