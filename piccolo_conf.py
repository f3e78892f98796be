"""Piccolo's configuration: the engine follows `DATABASE_URL` (see `app.config`)."""

from piccolo.conf.apps import AppRegistry

from app.db import make_engine

DB = make_engine()

APP_REGISTRY = AppRegistry(apps=["app.piccolo_app"])
