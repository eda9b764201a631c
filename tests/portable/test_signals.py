"""`pollama serve` stops on a signal where the event loop cannot watch signals (Windows' proactor loop).

On Linux the selector loop has `add_signal_handler`; here it is given the
base event loop's, which raises NotImplementedError as Windows' loop does,
so `run_forever` takes its portable path: a plain signal handler that hands
the stop to the loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import httpx
import pytest

from server.app import run_forever
from server.config import load_config
from tests.support.live_server import free_port


def test_serve_stops_gracefully_on_sigterm_without_loop_signal_handlers(
    monkeypatch: pytest.MonkeyPatch, models_dir: Path
) -> None:
    monkeypatch.setattr(
        asyncio.unix_events._UnixSelectorEventLoop,  # type: ignore[attr-defined]
        "add_signal_handler",
        asyncio.BaseEventLoop.add_signal_handler,
    )
    port = free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    config = load_config(settings={})
    answered: list[str] = []

    def stop_when_up() -> None:
        with httpx.Client(trust_env=False, timeout=2) as client:
            for _ in range(200):
                try:
                    answered.append(client.get(f"http://127.0.0.1:{port}/api/version").json()["version"])
                    break
                except httpx.HTTPError:
                    threading.Event().wait(0.1)
        os.kill(os.getpid(), signal.SIGTERM)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threading.Thread(target=stop_when_up, daemon=True).start()
    try:
        assert run_forever(config) == 0
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert answered, "the server never answered"
