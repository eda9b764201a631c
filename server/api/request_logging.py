"""`OLLAMA_DEBUG_LOG_REQUESTS`: keep each inference request's body, with a command that replays it.

As Ollama's `server/inference_request_log.go` (`initRequestLogging`,
`inferenceRequestLogger.log`) does: at start-up a temporary folder is made
(`pollama-request-logs-*`) and the log says where; each request to a generation
route leaves `<time>-<n>_<route>_body.json` (the body exactly as sent) and
`<time>-<n>_<route>_request.sh` (a curl command that sends it again), and the log
says "logged to …, replay using curl with `sh …`". The files are readable by the
owner only.

Credentials are never written: like Ollama's, the replay command carries only the
`Content-Type` header; when the server has API keys it reads the key from
`POLLAMA_API_KEY` in the replaying shell instead of storing one.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from quart import Quart, Response, g, request

from server.config import Config

log = logging.getLogger("pollama.request_log")

#: The routes Ollama wraps in `withInferenceRequestLogging` (`server/routes.go` `GenerateRoutes`).
LOGGED_ROUTES = frozenset(
    {"/api/generate", "/api/chat", "/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages"}
)


def shell_quote(value: str) -> str:
    """POSIX single quotes: method, Host and Content-Type come from the client and must stay literal."""
    return "'" + value.replace("'", "'\\''") + "'"


def route_for_filename(route: str) -> str:
    route = route.removeprefix("/")
    return "".join(c if c.isascii() and c.isalnum() else "_" for c in route) or "root"


@dataclass
class RequestLogger:
    folder: Path
    with_key: bool = False
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @classmethod
    def create(cls, *, with_key: bool) -> RequestLogger:
        folder = Path(tempfile.mkdtemp(prefix="pollama-request-logs-"))
        log.info(
            "request debug logging enabled; inference request logs will be stored in %s "
            "and include request bodies and replay curl commands",
            folder,
        )
        return cls(folder, with_key)

    def write(self, route: str, method: str, scheme: str, host: str, content_type: str, body: bytes) -> Path | None:
        now = time.time()
        stamp = (
            time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}Z-{next(self._counter):06d}"
        )
        name = route_for_filename(route)
        body_path = self.folder / f"{stamp}_{name}_body.json"
        script_path = self.folder / f"{stamp}_{name}_request.sh"
        headers = [shell_quote("Content-Type: " + (content_type or "application/json"))]
        if self.with_key:
            headers.append('"Authorization: Bearer ${POLLAMA_API_KEY:?set POLLAMA_API_KEY to replay}"')
        script = (
            "#!/bin/sh\n"
            'SCRIPT_DIR="$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)"\n'
            f"curl --request {shell_quote(method)} --url {shell_quote(f'{scheme}://{host}{route}')} "
            + " ".join(f"--header {h}" for h in headers)
            + f' --data-binary @"${{SCRIPT_DIR}}/{body_path.name}"\n'
        )
        try:
            _write_private(body_path, body)
            _write_private(script_path, script.encode())
        except OSError as exc:
            log.warning("failed to write debug request log for %s: %s", route, exc)
            return None
        log.info("logged to %s, replay using curl with `sh %s`", body_path, script_path)
        return body_path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def install(app: Quart, config: Config) -> None:
    if not config.debug_log_requests:
        return
    logger = RequestLogger.create(with_key=bool(config.api_keys))
    limit = config.max_json_body

    @app.before_request
    async def keep_body() -> None:
        if request.method != "POST" or request.path not in LOGGED_ROUTES:
            return
        length = request.content_length
        if length is not None and length > limit:
            return  # the handler refuses it with 413; nothing worth replaying
        g.debug_body = await request.body  # kept whole; the handler still reads it as usual

    @app.after_request
    async def write_body(response: Response) -> Response:
        body = g.get("debug_body")
        if body is not None:
            logger.write(
                request.path,
                request.method,
                request.scheme,
                request.host,
                request.headers.get("Content-Type", ""),
                body,
            )
        return response
