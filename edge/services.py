"""What the edge and the connectors need from the app's services (issue 18 item 4): a Protocol, so they are typed
without importing the gateway. ``gateway.services.Services`` satisfies it."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import redis
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from core.config import CoreSettings
from core.log import CommandLog


class AppServices(Protocol):
    @property
    def settings(self) -> CoreSettings: ...  # the app's one settings object, typed by the core's part (issue 18 item 5)

    @property
    def sessions(self) -> sessionmaker[Session]: ...

    @property
    def redis(self) -> redis.Redis | None: ...

    @property
    def log(self) -> CommandLog: ...

    def now(self) -> datetime: ...


def app_services() -> AppServices:
    """The current app's services, typed by what the edge and the connectors may use."""
    found: AppServices = current_app.config["MBUZZ"]
    return found
