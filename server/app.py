"""Build the Quart app (`create_app`) and run it on Hypercorn (`serve`).

`build_services` makes the typed `Services` a server holds; `create_app` registers
every API surface by name (`BLUEPRINTS`) and owns the services for exactly its
serving lifetime (Quart's `while_serving`): the store is prepared before the
first request, and runners and the registry are stopped after the last, in one
function that says in which order. Nothing lives at module level, so tests
start as many servers as they like in one process.

No API surface is optional: every one depends only on what `pyproject.toml`
requires. A surface that one day needs an optional package decides by a check
of that package, with a log line, not by whether its own module imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from quart import Blueprint, Quart, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from server.activity import RequestRing
from server.api import (
    anthropic,
    api_keys,
    developer,
    native,
    openai,
    pollama_ext,
    request_logging,
    security,
    transfer,
)
from server.api import inference as inference_api
from server.api import metrics as metrics_api
from server.api.context import SERVICES
from server.api.http import error_response
from server.api.not_found import not_found_response
from server.child_env import pass_to_children
from server.config import Config
from server.errors import PollamaError
from server.inference.runner_calls import start_runner
from server.inference.service import REQUEST_ROUTE, Inference
from server.metrics import MeteredInference, Metrics
from server.registry.service import RegistryService
from server.runner.rpc_endpoints import WORKERS_ENV
from server.scheduler import Scheduler
from server.services import Services
from server.store.store import Store

log = logging.getLogger("pollama.server")
request_log = logging.getLogger("pollama.request")


def build_services(
    config: Config,
    *,
    store: Store | None = None,
    scheduler: Scheduler | None = None,
    inference: Inference | None = None,
) -> Services:
    """Every service a server holds, made from `config`; a test hands in the part it replaces.

    The inference service, the server's own or one handed in, is counted for `/metrics`.
    Nothing here starts anything: `create_app`'s serving lifetime does.
    """
    store = Store(config.models) if store is None else store
    scheduler = Scheduler(config, start_runner) if scheduler is None else scheduler
    inference = Inference(store, scheduler) if inference is None else inference
    registry = RegistryService(store, ollama_home=config.ollama_home)
    metrics = Metrics(scheduler, registry.context.hub.bytes_transferred)
    return Services(
        config=config,
        store=store,
        scheduler=scheduler,
        inference=MeteredInference(inference, metrics),
        registry=registry,
        metrics=metrics,
        requests=RequestRing(),
        logs=developer.new_log_ring(),
    )


def create_app(config: Config, *, services: Services | None = None) -> Quart:
    app = Quart("pollama", static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=None,  # blob uploads are streamed; JSON bodies have their own limit
        BODY_TIMEOUT=None,  # a multi-GB blob upload takes as long as it takes
        RESPONSE_TIMEOUT=None,  # so does a long generation stream
        POLLAMA_MAX_JSON_BODY=config.max_json_body,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    svc = build_services(config) if services is None else services
    pass_to_children(WORKERS_ENV, ",".join(config.rpc_workers) or None)
    app.extensions[SERVICES] = svc

    @app.before_request
    async def start_timer() -> None:
        g.started = time.perf_counter()
        REQUEST_ROUTE.set(f"{request.method} {request.path}")

    # Request hooks, in this order: the two that record a request come before the checks
    # that may refuse it, so a refused request is listed and counted too.
    developer.record_requests(app, svc.requests)
    metrics_api.count_requests(app, svc.metrics)
    security.install(app, config)
    api_keys.install(app, config)
    request_logging.install(app, config)

    @app.after_request
    async def log_request(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        # The path only, never the query or a header: a key sent in either must not reach the log.
        request_log.info(
            "%s %s %d %.1fms %s",
            request.method,
            request.path,
            response.status_code,
            elapsed * 1000,
            request.remote_addr,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 1),
                "remote": request.remote_addr,
            },
        )
        return response

    @app.errorhandler(NotFound)
    async def not_found(_: Exception) -> Response:
        return not_found_response(request.method, request.path)

    @app.errorhandler(MethodNotAllowed)
    async def not_allowed(_: Exception) -> Response:
        return Response("405 method not allowed", status=405, content_type="text/plain")

    @app.errorhandler(PollamaError)
    async def pollama_error(exc: PollamaError) -> Response:
        return error_response(exc)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response | HTTPException:
        """A bug: logged with its traceback, answered as the spec's native `Error500` (not Quart's HTML page).

        The OpenAI and Anthropic blueprints have their own, in their shapes.
        """
        if isinstance(exc, HTTPException):
            return exc
        log.exception("%s %s failed", request.method, request.path)
        return error_response(PollamaError(f"internal error: {exc}"))

    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)

    @app.while_serving
    async def lifetime() -> AsyncGenerator[None, None]:
        """What the server holds while it serves: started in this order, stopped in reverse.

        Every stop runs even when one before it failed (its error is logged), so a
        registry that fails to close still leaves no runner process behind.
        """
        async with contextlib.AsyncExitStack() as stack:
            # first in, so start-up is in the Developer view's log; last out, so is shutdown
            root = logging.getLogger()
            root.addHandler(svc.logs)
            stack.callback(root.removeHandler, svc.logs)
            await asyncio.to_thread(svc.store.prepare, prune=not config.noprune)
            stack.push_async_callback(_stop, "runners", svc.scheduler.close)
            await svc.registry.start()
            stack.push_async_callback(_stop, "registry", svc.registry.close)
            yield

    return app


#: Every API surface, each its module's `bp`. An explicit list: a module that fails to
#: import fails the server's start, never drops its routes in silence.
BLUEPRINTS: tuple[Blueprint, ...] = (
    native.bp,
    inference_api.bp,
    openai.bp,
    anthropic.bp,
    pollama_ext.bp,
    transfer.bp,
    developer.bp,
    metrics_api.bp,
)


async def _stop(what: str, close: Callable[[], Awaitable[None]]) -> None:
    try:
        await close()
    except Exception:
        log.exception("error stopping the %s during shutdown", what)


def listen_backlog() -> int:
    """The system's largest accept queue, as Ollama's listener gets it (Go's `net.Listen`
    reads `somaxconn` in `net/sock_linux.go` `maxListenerBacklog`).

    Hypercorn's default of 100 resets the connections of a burst of clients beyond
    it, e.g. every app reconnecting when the desktop wakes, while a model loads.
    """
    try:
        return max(128, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    except (OSError, ValueError):
        return socket.SOMAXCONN


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    hc.bind = [config.host.netloc]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 5.0
    hc.keep_alive_timeout = 75.0
    hc.backlog = listen_backlog()
    hc.include_server_header = False
    return hc


class PortInUse(PollamaError):
    pass


async def serve(
    config: Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[Any]] | None = None,
    services: Services | None = None,
) -> None:
    """Serve until `shutdown_trigger` completes (or forever)."""
    app = create_app(config, services=services)
    hc = hypercorn_config(config)
    trigger = shutdown_trigger or _never
    try:
        await hypercorn_serve(app, hc, shutdown_trigger=trigger)  # type: ignore[arg-type]
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortInUse(
                f"listen tcp {config.host.netloc}: bind: address already in use — "
                "is another Ollama or pollama server running?"
            ) from None
        raise


async def _never() -> None:
    await asyncio.Event().wait()


def run_forever(config: Config) -> int:
    """`pollama serve`: run in the foreground; SIGINT/SIGTERM (and Ctrl+Break on Windows) shut down gracefully.

    Windows' event loop has no `add_signal_handler`: there a plain signal
    handler hands the stop to the loop (the proactor loop wakes on signals).
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        ctrl_break = getattr(signal, "SIGBREAK", None)  # Windows only
        for sig in (signal.SIGINT, signal.SIGTERM, *([ctrl_break] if ctrl_break is not None else [])):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        log.info("Listening on %s (version %s)", config.host.netloc, _version())
        await serve(config, shutdown_trigger=stop.wait)

    try:
        asyncio.run(main())
    except PortInUse as exc:
        log.error("Error: %s", exc)
        return 1
    return 0


def _version() -> str:
    from server import __version__

    return __version__
