"""The services a running server holds, handed to the API layer as one typed object.

`server.app.build_services` makes every part before the app exists, so this is a
frozen dataclass of typed fields: a handler sees what each part is (no `Any`, no
string-keyed extras), and nothing is swapped or added while the server runs. Who
starts and stops which part is written out in one place, the app's serving
lifetime (`server.app.create_app`, Quart's `while_serving`). No module-level
state anywhere, so tests can run several servers in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.activity import LogRing, RequestRing
from server.config import Config
from server.inference.service import Inference
from server.metrics import MeteredInference, Metrics
from server.registry.service import RegistryService
from server.scheduler import Scheduler
from server.store.store import Store


@dataclass(frozen=True)
class Services:
    config: Config
    store: Store
    #: Runner processes: which are loaded, for how long, who waits (server/scheduler.py).
    scheduler: Scheduler
    #: Generation and embeddings (server/inference/service.py); the server's own is counted
    #: for `/metrics` (`MeteredInference`), a bare `Inference` serves as well.
    inference: Inference | MeteredInference
    #: Pull and push (server/registry/); started and stopped with the server.
    registry: RegistryService
    #: What `/metrics` reports (server/metrics.py).
    metrics: Metrics
    #: The Developer view's last requests and log records (server/activity.py, server/api/developer.py).
    requests: RequestRing
    logs: LogRing
