"""`pollama worker`: lend this machine's devices to a pollama server over llama.cpp's RPC.

The worker is llama.cpp's own RPC server (server/runner/rpc.py `serve`), run
from the libraries pollama ships, so the same executable (frozen or not) is
both ends. The C call never returns while it serves; it runs on a thread of
its own so that Ctrl+C and SIGTERM still end the process at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from pathlib import Path


def _port_free(host: str, port: int) -> str | None:
    """None when `host:port` can be bound now, else why not (said before llama.cpp tries)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def cmd_worker(args: argparse.Namespace) -> int:
    import platformdirs

    from server.runner.cpu import physical_cores
    from server.runner.rpc import SECURITY_WARNING, Endpoint, RpcError, serve

    endpoint = Endpoint(args.host, args.port)
    if (why := _port_free(args.host, args.port)) is not None:
        print(f"Error: cannot listen on {endpoint}: {why}", file=sys.stderr)
        return 1
    if not endpoint.is_loopback:
        print(SECURITY_WARNING.format(endpoint=endpoint), file=sys.stderr, flush=True)
    cache = str(Path(platformdirs.user_cache_dir("pollama")) / "rpc") if args.cache else None
    threads = args.threads or physical_cores() or os.cpu_count() or 1
    devices = [d.strip() for d in (args.device or "").split(",") if d.strip()]

    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve(endpoint, threads=threads, cache_dir=cache, device_names=devices)
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="rpc-server", daemon=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"pollama worker: serving on {endpoint} ({threads} threads)", file=sys.stderr, flush=True)
    thread.start()
    try:
        while thread.is_alive() and not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        return 130
    if stop.is_set():
        return 0
    if failure:
        exc = failure[0]
        print(
            f"Error: {exc}" if isinstance(exc, RpcError) else f"Error: the RPC server failed: {exc!r}", file=sys.stderr
        )
        return 1
    print("Error: the RPC server stopped (see the line above)", file=sys.stderr)
    return 1
