"""The registry service a running server holds (`Services.registry`).

Built from the server's config and environment by `server.app.build_services`;
the app's serving lifetime calls `start` (the creation of `~/.ollama/id_ed25519`
when missing, as `ollama serve` does) and `close` (the release of its
connections and threads). Everything is per service: two servers in one
process share nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from server.registry import keys
from server.registry.auth import Authenticator
from server.registry.context import RegistryContext
from server.registry.endpoints import Endpoints
from server.registry.hub import DownloadHub
from server.registry.progress import Progress
from server.registry.pull import pull
from server.registry.push import push
from server.registry.settings import TransferSettings
from server.registry.transport import Transport
from server.store.names import Name
from server.store.store import Store

log = logging.getLogger(__name__)

#: Worker threads for blob transfers: parts of several blobs move at once.
TRANSFER_THREADS = 64


class RegistryService:
    def __init__(
        self,
        store: Store,
        *,
        ollama_home: Path,
        environ: Mapping[str, str] | None = None,
        settings: TransferSettings | None = None,
    ) -> None:
        environ = dict(os.environ if environ is None else environ)
        # httpx logs every request at INFO: one line per part would drown the server log.
        httpx_log = logging.getLogger("httpx")
        httpx_log.setLevel(max(httpx_log.level, logging.WARNING))
        self.ollama_home = ollama_home
        self.settings = settings or TransferSettings.from_env(environ)
        home = Path(environ.get("HOME") or Path.home())
        self.authenticator = Authenticator(home=home, environ=environ, key_source=self.key)
        self.transport = Transport(self.settings, self.authenticator, environ=environ)
        self.executor = concurrent.futures.ThreadPoolExecutor(TRANSFER_THREADS, thread_name_prefix="registry")
        self.endpoints = Endpoints.from_env(environ)
        self.context = RegistryContext(
            store, self.transport, DownloadHub(), self.executor, self.settings, self.endpoints
        )
        self._key: keys.KeyPair | None = None

    def key(self) -> keys.KeyPair:
        """The ed25519 key pair, created on first need if `serve` has not made it yet."""
        if self._key is None:
            self._key = keys.ensure(self.ollama_home)
        return self._key

    def pull(self, name: Name, *, insecure: bool = False) -> AsyncIterator[Progress]:
        return pull(self.context, name, insecure=insecure)

    def push(self, name: Name, *, insecure: bool = False) -> AsyncIterator[Progress]:
        return push(self.context, name, insecure=insecure)

    def pull_progress(self, name: Name) -> AsyncIterator[Progress]:
        """For `/api/create` with a `from` model that is not here yet."""
        return self.pull(name)

    async def start(self) -> None:
        try:
            await asyncio.to_thread(self.key)
        except (OSError, ValueError) as exc:
            log.warning("registry key %s unavailable: %s", self.ollama_home / keys.KEY_NAME, exc)

    async def close(self) -> None:
        await self.context.hub.stop_all()
        await asyncio.to_thread(self.transport.close)
        self.executor.shutdown(wait=False, cancel_futures=True)
