"""The runner process: `python -m server.runner` (or `pollama runner` when frozen).

Three threads, one job each:
- the main thread is the engine thread: it loads the model and is the only thread that
  ever calls llama.cpp (benchmarking.md: a second calling thread slows decoding 25–35 %);
- a reader thread turns stdin into messages; health is answered right there, everything
  else goes to the engine's inbox; stdin EOF means the parent is gone, so the runner exits;
- a writer thread encodes outgoing messages and writes them, so JSON and pipe writes never
  sit on the engine's critical path.

The protocol uses a private duplicate of fd 1; fd 1 itself is pointed at stderr so a stray
`printf` from native code lands in the log instead of corrupting the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
from typing import Any, BinaryIO

from server.runner import messages as m
from server.runner.protocol import DecodedFrame, FrameDecoder, FrameError, encode

EXIT_GRACE_SECONDS = 3.0


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pollama runner", description="pollama model runner (internal)")
    parser.add_argument("--quiet", action="store_true", help="log only llama.cpp warnings and errors")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="load ggml's backends, print what loaded (backends, devices, CPU variant) as JSON, exit",
    )
    return parser.parse_args(argv)


def probe(out: BinaryIO) -> int:
    """`pollama runner --probe`: what a runner would load, for a server that must not load GPU
    backends itself (server/gpu.py). The process, and any GPU context it made, ends here."""
    from server.runner.ggml_backends import load  # noqa: PLC0415

    out.write(json.dumps(load().to_json()).encode() + b"\n")
    out.flush()
    return 0


class Writer(threading.Thread):
    """Drains the outbox into the protocol pipe, several messages per write when they queue up;
    a completion's pieces that queued up behind a full pipe go out as one (`coalesce`). The
    outbox holds single messages and lists of them (the engine's, a step at a time)."""

    def __init__(self, out: BinaryIO, outbox: queue.SimpleQueue[Any]) -> None:
        super().__init__(name="runner-writer", daemon=True)
        self._out = out
        self._outbox = outbox

    def run(self) -> None:
        while True:
            msg = self._outbox.get()
            if msg is None:
                return
            pending: list[Any] = []
            stop = False
            while True:
                if isinstance(msg, list):  # a step's messages from the engine
                    pending.extend(msg)
                else:
                    pending.append(msg)
                try:
                    msg = self._outbox.get_nowait()
                except queue.Empty:
                    break
                if msg is None:
                    stop = True
                    break
            try:
                self._out.write(b"".join(encode(one) for one in m.coalesce(pending)))
                self._out.flush()
            except (BrokenPipeError, OSError):
                os._exit(0)  # the parent is gone; nothing left to serve
            if stop:
                return


class Reader(threading.Thread):
    """stdin → messages. Loading waits on `load_box`; afterwards messages go to the engine."""

    def __init__(
        self,
        stdin: BinaryIO,
        inbox: queue.SimpleQueue[Any],
        outbox: queue.SimpleQueue[Any],
        load_box: queue.SimpleQueue[Any],
        status: dict[str, Any],
    ) -> None:
        super().__init__(name="runner-reader", daemon=True)
        self._stdin = stdin
        self._inbox = inbox
        self._outbox = outbox
        self._load_box = load_box
        self._status = status

    def run(self) -> None:
        decoder = FrameDecoder()
        try:
            while True:
                data = os.read(self._stdin.fileno(), 1 << 16)
                if not data:
                    break
                for msg in decoder.feed(data):
                    self._dispatch(msg)
        except (OSError, FrameError) as exc:
            sys.stderr.write(f"pollama runner: input stream broken: {exc}\n")
        self._load_box.put(None)
        self._inbox.put(m.Shutdown())
        # the engine may be deep in a long decode; do not outlive the parent for long
        timer = threading.Timer(EXIT_GRACE_SECONDS, lambda: os._exit(0))
        timer.daemon = True
        timer.start()

    def _dispatch(self, msg: Any) -> None:
        if isinstance(msg, DecodedFrame):
            sys.stderr.write(f"pollama runner: ignoring bad frame ({msg.error}): {msg.raw[:200]!r}\n")
        elif isinstance(msg, m.Load):
            self._load_box.put(msg)
        elif isinstance(msg, m.Health):
            engine = self._status.get("engine")
            state = self._status.get("state", "loading")
            active = engine.active if engine is not None else 0
            waiting = len(engine.waiting) if engine is not None else 0
            self._outbox.put(m.HealthReply(msg.id, state, active, waiting))
        else:
            self._inbox.put(msg)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if args.probe:
        return probe(proto_out)
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    load_box: queue.SimpleQueue[Any] = queue.SimpleQueue()
    status: dict[str, Any] = {"state": "loading"}
    writer = Writer(proto_out, outbox)
    writer.start()
    Reader(sys.stdin.buffer, inbox, outbox, load_box, status).start()

    load = load_box.get()
    if load is None:
        return 0
    # the first llama.cpp call of the process happens here, on the main thread
    from server.runner.backend import BackendError, LogSink  # noqa: PLC0415
    from server.runner.engine import Engine  # noqa: PLC0415

    sink = LogSink(quiet_below=3 if args.quiet else 2)
    engine = Engine(outbox.put, sink)
    try:
        info = engine.load(load.options)
    except BackendError as exc:
        outbox.put(m.Error(0, str(exc)))
        outbox.put(None)
        writer.join(timeout=EXIT_GRACE_SECONDS)
        return 1
    sys.stderr.write(
        f"pollama runner: loaded {info.model_path} ({info.description}), ctx {info.n_ctx} x "
        f"{info.num_parallel}, {info.n_threads} threads, {info.size} bytes\n"
    )
    status["engine"] = engine
    status["state"] = "ok"
    outbox.put(m.Loaded(info))
    try:
        engine.run(inbox)
    finally:
        status["state"] = "closing"
        engine.close()
        outbox.put(None)
        writer.join(timeout=EXIT_GRACE_SECONDS)
    return 0
