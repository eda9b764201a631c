"""What pull and push share: the store, the HTTP transport, the download hub, the thread pool, the host map."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.registry.endpoints import Endpoints
from server.registry.hub import DownloadHub
from server.registry.settings import TransferSettings
from server.registry.transport import Transport
from server.store.store import Store


@dataclass
class RegistryContext:
    store: Store
    transport: Transport
    hub: DownloadHub
    executor: concurrent.futures.ThreadPoolExecutor
    settings: TransferSettings
    #: Hosts served elsewhere (`HF_ENDPOINT` for hf.co names).
    endpoints: Endpoints = field(default_factory=Endpoints)

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking registry I/O on the transfer pool (not the loop's small default one)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
