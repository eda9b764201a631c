"""What the UI may ask of a server it started itself: where it is, restart, stop.

`app/desktop.py` implements this around `server.app.serve`; the UI knows
only this protocol, so it works the same with no embedded server at all
(a client of one already running), and tests can pass their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class ServerControl(Protocol):
    @property
    def url(self) -> str:
        """Base URL the API answers on (loopback even when bound to every interface)."""
        ...

    @property
    def api_key(self) -> str | None:
        """The key the UI sends with its own requests (the server's first `POLLAMA_API_KEYS` key), or None."""
        ...

    def restart(self, on_ready: Callable[[str | None], None]) -> None:
        """Stop, re-read the settings, start again; `on_ready(error)` runs on a worker thread."""
        ...

    def stop(self) -> None:
        """Stop serving and end the runners; returns once stopped."""
        ...
