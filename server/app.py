"""Build the Quart app (`create_app`) and run it on Hypercorn (`serve`).

The app owns its services for exactly its serving lifetime (`while_serving`):
the store is prepared before the first request, and runners are stopped
after the last. Nothing lives at module level, so tests start as many
servers as they like in one process.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from server.api import api_keys, developer, request_logging, security
from server.child_env import pass_to_children
from server.config import Config
from server.errors import PollamaError
from server.inference.service import REQUEST_ROUTE
from server.runner.rpc_endpoints import WORKERS_ENV
from server.services import Services
from server.store.store import Store

log = logging.getLogger("pollama.server")
request_log = logging.getLogger("pollama.request")


def create_app(config: Config, *, services: Services | None = None) -> Quart:
    app = Quart("pollama", static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=None,  # blob uploads are streamed; JSON bodies have their own limit
        BODY_TIMEOUT=None,  # a multi-GB blob upload takes as long as it takes
        RESPONSE_TIMEOUT=None,  # so does a long generation stream
        POLLAMA_MAX_JSON_BODY=config.max_json_body,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    svc = services or Services(config=config, store=Store(config.models))
    pass_to_children(WORKERS_ENV, ",".join(config.rpc_workers) or None)
    wire_inference(svc)
    from server.registry.service import install as install_registry

    install_registry(svc)
    app.extensions["pollama"] = svc

    @app.before_request
    async def start_timer() -> None:
        g.started = time.perf_counter()
        REQUEST_ROUTE.set(f"{request.method} {request.path}")

    developer.install(app, svc)  # before the security check, so a refused request is listed too
    install_metrics(app, svc)
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
        from server.api.not_found import not_found_response

        return not_found_response(request.method, request.path)

    @app.errorhandler(MethodNotAllowed)
    async def not_allowed(_: Exception) -> Response:
        return Response("405 method not allowed", status=405, content_type="text/plain")

    from server.api.http import error_response

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

    from server.api.native import bp as native_bp

    app.register_blueprint(native_bp)
    for module in _optional_blueprints():
        app.register_blueprint(module)

    @app.while_serving
    async def lifetime() -> Any:
        await asyncio.to_thread(svc.store.prepare, prune=not config.noprune)
        for start in svc.extras.get("on_start", []):
            await start(svc)
        try:
            yield
        finally:
            for stop in reversed(svc.extras.get("on_stop", [])):
                try:
                    await stop(svc)
                except Exception:
                    log.exception("error during shutdown")

    return app


def install_metrics(app: Quart, svc: Services) -> None:
    """`/metrics`, the per-request count, and the inference service wrapped to count generations."""
    from server.api import metrics as metrics_api
    from server.metrics import MeteredInference, Metrics

    def pulled_bytes() -> int:
        return svc.registry.context.hub.bytes_transferred() if svc.registry is not None else 0

    metrics = Metrics(lambda: svc.scheduler, pulled_bytes)
    inner = svc.inference.inner if isinstance(svc.inference, MeteredInference) else svc.inference
    svc.inference = MeteredInference(inner, metrics)
    metrics_api.install(app, metrics)
    app.register_blueprint(metrics_api.bp)


def wire_inference(svc: Services) -> None:
    """Give the services a scheduler (runner processes) and the inference service on top."""
    from server.inference.runner_calls import start_runner
    from server.inference.service import Inference
    from server.scheduler import Scheduler

    if svc.scheduler is None:
        svc.scheduler = Scheduler(svc.config, start_runner)

        async def stop_runners(s: Services) -> None:
            await s.scheduler.close()

        svc.extras.setdefault("on_stop", []).append(stop_runners)
    if svc.inference is None:
        svc.inference = Inference(svc.store, svc.scheduler)


def _optional_blueprints() -> list[Any]:
    """Blueprints of the API surfaces beyond model management, as they exist."""
    import importlib

    found = []
    for module_name in (
        "server.api.inference",
        "server.api.openai",
        "server.api.anthropic",
        "server.api.pollama_ext",
        "server.api.transfer",
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        found.append(module.bp)
    return found


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
