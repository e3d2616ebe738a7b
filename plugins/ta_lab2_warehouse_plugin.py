"""Airflow plugin: the ta_lab2 Warehouse page in the Airflow UI (Browse → Warehouse).

A FastAPI app (``ta_lab2.ui.app``) mounted at ``/ta_lab2/warehouse`` and shown in the UI's
iframe through an external view; its routes require an authenticated Airflow user. This file
is loaded by every Airflow process that loads plugins (task processes too, for macros), so it
imports nothing heavy: the app is built on its first request, in the API server.
See docs/operations/DAILY_REFRESH.md, "Warehouse page".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow.plugins_manager import AirflowPlugin

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
URL_PREFIX = "/ta_lab2/warehouse"  # == ta_lab2.ui.app.URL_PREFIX (not imported: see above)


class LazyWarehouseApp:
    """An ASGI app that builds ``ta_lab2.ui.app.create_app()`` on its first request."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            from ta_lab2.ui.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class TaLab2WarehousePlugin(AirflowPlugin):
    name = "ta_lab2_warehouse"
    fastapi_apps = [{"app": LazyWarehouseApp(), "url_prefix": URL_PREFIX, "name": "ta_lab2 warehouse"}]
    external_views = [{"name": "Warehouse", "href": URL_PREFIX.lstrip("/") + "/", "url_route": "warehouse",
                       "destination": "nav", "category": "browse"}]
