"""The services a running server holds, handed to the API layer as one object.

Built by `create_app`, owned by the app's serving lifetime: no module-level
state anywhere, so tests can run several servers in one process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from server.config import Config
from server.store.store import Store


@dataclass
class Services:
    config: Config
    store: Store
    #: Set once the inference layer is wired (server/scheduler.py).
    scheduler: Any = None
    #: Generation and embeddings (server/inference/service.py).
    inference: Any = None
    #: Set once the registry layer is wired (server/registry/).
    registry: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
