"""How a handler reaches the server's services (set on the app by create_app)."""

from __future__ import annotations

from quart import current_app

from server.services import Services

#: The key of `Services` in `app.extensions`.
SERVICES = "pollama"


def services() -> Services:
    svc: Services = current_app.extensions[SERVICES]
    return svc
