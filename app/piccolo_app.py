"""The Piccolo app: its tables and the migrations folder at the repository root."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from app.tables import Session, SessionOutbox

APP_CONFIG = AppConfig(
    app_name="session_inbox",
    migrations_folder_path=str(Path(__file__).resolve().parent.parent / "piccolo_migrations"),
    table_classes=[Session, SessionOutbox],
    migration_dependencies=[],
    commands=[],
)
