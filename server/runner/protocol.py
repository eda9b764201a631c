"""Framing of the runner protocol: newline-delimited JSON, one message per line.

A plain class with no I/O (the Hypercorn habit): the reader on either side
feeds it whatever bytes arrived and gets whole messages back, so partial
reads, several messages in one read and oversized or broken frames are all
tested without pipes or processes. NDJSON is enough because `json.dumps`
never emits a raw newline; it keeps the wire readable in a debugger.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from server.runner.messages import MessageError, from_wire, to_wire

MAX_FRAME = 256 * 1024 * 1024  # a batch of large embeddings is the biggest honest frame


class FrameError(ValueError):
    """The byte stream is not (or no longer) the runner protocol."""


def encode(message: Any) -> bytes:
    """One message as one frame: compact JSON and a newline."""
    return json.dumps(to_wire(message), ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


@dataclass
class DecodedFrame:
    """A frame that parsed as JSON but not as a message: reported, not fatal."""

    raw: bytes
    error: str


class FrameDecoder:
    """Turns a byte stream into messages; keeps the unfinished tail between feeds."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held back (nonzero at EOF means a torn message)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Any]:
        """Messages completed by `data`, in order. A line that is not a message becomes a
        `DecodedFrame` so the caller can log it and go on; a frame over the size limit
        raises FrameError, since the stream cannot be trusted after it."""
        self._buffer += data
        out: list[Any] = []
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(self._buffer[start:end])
            start = end + 1
            if line.strip():
                out.append(self._decode(line))
        if start:
            del self._buffer[:start]
        if len(self._buffer) > self._max_frame:
            self._buffer.clear()
            raise FrameError(f"frame larger than {self._max_frame} bytes")
        return out

    @staticmethod
    def _decode(line: bytes) -> Any:
        try:
            data = json.loads(line)
        except ValueError as exc:
            return DecodedFrame(line, f"not JSON: {exc}")
        try:
            return from_wire(data)
        except MessageError as exc:
            return DecodedFrame(line, str(exc))
