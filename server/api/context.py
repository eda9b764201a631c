"""How a handler reaches the server's services (set on the app by create_app)."""

from __future__ import annotations

from quart import current_app

from server.services import Services


def services() -> Services:
    return current_app.extensions["pollama"]
