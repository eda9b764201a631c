"""`pollama app`: the tray application, with the server embedded on a background thread.

Start-up: one instance per user (a second launch brings the first one's
window forward, on the page `--show` names, and exits); if a server already answers on the configured
address the app says so and works as its client, otherwise it serves itself
(Hypercorn with a shutdown trigger, on its own thread and event loop). Quit:
pulls checkpointed, server stopped, runners ended.

This module (with `app/store_link.py`, the hard-link import into the store
it runs) is the only place where the desktop touches `server/`; the windows
under `ui/` talk HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

log = logging.getLogger("pollama.app")

READY_TIMEOUT = 30.0


def loopback_url(netloc_url: str) -> str:
    """A server bound to every interface is reached on loopback."""
    return netloc_url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://127.0.0.1:")


def first_api_key(config: object) -> str | None:
    keys = getattr(config, "api_keys", ())
    return keys[0] if keys else None


def server_answers(url: str, timeout: float = 1.0) -> bool:
    """Is an Ollama-compatible server already there? (pollama or Ollama: both answer `/api/version`.)"""
    try:
        r = httpx.get(url + "/api/version", timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


class EmbeddedServer:
    """`server.app.serve` on a daemon thread with its own event loop; stop() is graceful."""

    def __init__(self, load_config: Callable[[], object]) -> None:
        self._load_config = load_config
        self.config = load_config()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.error: str | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return loopback_url(self.config.host.url)  # type: ignore[attr-defined]

    @property
    def api_key(self) -> str | None:
        """The first of the server's API keys: the tray's own requests carry it."""
        return first_api_key(self.config)

    def start(self, timeout: float = READY_TIMEOUT) -> str | None:
        """Start serving; returns None once the server answers, else why it did not start."""
        from server.app import PortInUse, serve

        self.error = None
        if server_answers(self.url, timeout=0.5):
            # Readiness is "the address answers": someone else answering would look like success.
            return f"listen tcp {self.config.host.netloc}: bind: address already in use by another server"  # type: ignore[attr-defined]
        started = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            started.set()
            await serve(self.config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        def run() -> None:
            try:
                asyncio.run(main())
            except PortInUse as exc:
                self.error = str(exc)
            except Exception as exc:  # a server that died must show in the tray, not vanish
                log.exception("embedded server stopped")
                self.error = str(exc) or type(exc).__name__
            finally:
                started.set()

        self._thread = threading.Thread(target=run, name="pollama-server", daemon=True)
        self._thread.start()
        started.wait(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None or not self._thread.is_alive():
                return self.error or "the server stopped while starting"
            if server_answers(self.url, timeout=0.5):
                return None
            time.sleep(0.05)
        return f"the server did not answer within {timeout:.0f} s"

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            loop, stop, thread = self._loop, self._stop, self._thread
            if loop is not None and stop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(stop.set)
                except RuntimeError:
                    pass  # the loop already ended
            if thread is not None:
                thread.join(timeout)
            self._thread = self._loop = self._stop = None

    def restart(self, on_ready: Callable[[str | None], None]) -> None:
        """Stop, re-read the config (settings file changed), start; off the UI thread."""

        def work() -> None:
            self.stop()
            try:
                self.config = self._load_config()
            except Exception as exc:
                on_ready(f"the settings are not valid: {exc}")
                return
            on_ready(self.start())

        threading.Thread(target=work, name="pollama-restart", daemon=True).start()


def setup_logging(log_dir: Path, debug: int, log_format: str = "text") -> None:
    """Log to `<log dir>/app.log` (the tray's "Open logs folder") and to stderr; once per process.

    `log_format` is `POLLAMA_LOG_FORMAT`: `json` writes one JSON object per line (server/logs.py)."""
    from server.logs import formatter

    root = logging.getLogger()
    if any(getattr(h, "pollama", False) for h in root.handlers):
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        log_dir / "app.log", maxBytes=5_000_000, backupCount=3, encoding="utf-8"
    )
    fmt = formatter(log_format)
    handler.setFormatter(fmt)
    handler.pollama = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    root.addHandler(stream)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)


def parse_args(argv: list[str]) -> argparse.Namespace:
    from ui.pages import PAGE_NAMES

    parser = argparse.ArgumentParser(prog="pollama app", description="Run the pollama tray application")
    parser.add_argument("--hidden", action="store_true", help="start in the tray without opening the window")
    parser.add_argument("--client-only", action="store_true", help="never start a server; use the one configured")
    parser.add_argument(
        "--show",
        choices=PAGE_NAMES,
        metavar="|".join(PAGE_NAMES),
        help="open the window on this page (also when pollama is already running)",
    )
    return parser.parse_args(argv)


def handoff_message(page: str | None) -> str:
    """What a second launch sends the first one: "show", or "show PAGE"."""
    return f"show {page}" if page else "show"


@dataclass
class Launched:
    """A started desktop app, before its event loop runs (the screenshot script drives it from here)."""

    app: Any
    desktop: Any
    instance: Any
    server: EmbeddedServer | None


def launch(argv: list[str]) -> Launched | int:
    """Everything `pollama app` does before the event loop; an int is the exit code of a launch that stops here."""
    args = parse_args(argv)
    from server.config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    setup_logging(config.log_dir, config.debug, config.log_format)

    from PySide6.QtWidgets import QApplication

    from ui.desktop import DesktopApp
    from ui.single_instance import SingleInstance

    # The stubs type `instance()` as QCoreApplication; the app only ever creates a QApplication.
    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv[:1]))
    app.setApplicationName("pollama")
    app.setQuitOnLastWindowClosed(False)
    instance = SingleInstance()
    if not instance.acquire(handoff_message(args.show)):
        print("pollama is already running; its window was brought forward.")
        return 0

    url = loopback_url(config.host.url)
    server: EmbeddedServer | None = None
    if server_answers(url):
        status = f"Using the server already running at {config.host.netloc}"
        log.info("%s; working as its client", status)
    elif args.client_only:
        status = f"No server at {config.host.netloc}"
    else:
        server = EmbeddedServer(load_config)
        error = server.start()
        if error:
            status = f"The server could not start: {error}"
            log.error("%s", status)
        else:
            status = f"Server running at {config.host.netloc}"
    from server import __version__

    importer = None
    if server is not None:  # this process runs the store: an import may hard-link into it
        from app.store_link import StoreLinkImporter
        from ui.gguf_import import HttpBlobImporter

        embedded = server
        importer = StoreLinkImporter(
            lambda: embedded.config.models / "blobs",  # type: ignore[attr-defined]
            HttpBlobImporter(lambda: embedded.url, lambda: embedded.api_key),
        )
    desktop = DesktopApp(
        url,
        server,
        status=status,
        log_dir=config.log_dir,
        version=__version__,
        importer=importer,
        api_key=first_api_key(config),
    )
    instance.activated.connect(desktop.handle_message)
    app.aboutToQuit.connect(desktop.shutdown)
    desktop.start()
    if args.show or not args.hidden or desktop.tray.icon is None:
        desktop.show_page(args.show or "chat")
    return Launched(app, desktop, instance, server)


def main(argv: list[str] | None = None) -> int:
    launched = launch(sys.argv[1:] if argv is None else argv)
    if isinstance(launched, int):
        return launched
    code = launched.app.exec()
    launched.desktop.shutdown()
    launched.instance.release()
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
