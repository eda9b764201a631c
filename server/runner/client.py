"""The server's side of the runner protocol: start a runner process, talk to it from the
asyncio loop, and turn its death into clear errors.

Many requests share one pipe, told apart by id: a reader task decodes frames and routes
each to the waiting request (a queue for a completion stream, a future for everything
else). When the process dies (llama.cpp abort, OOM kill, SIGKILL) every request still in
flight ends with a RunnerError that names the model file and quotes the runner's last
stderr lines, and the `on_exit` callbacks tell the scheduler to forget it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections import deque
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

from server.child_env import child_env
from server.errors import BadRequest, PollamaError, RunnerError
from server.runner import messages as m
from server.runner.interface import CompletionChunk, EmbedResult, RerankResult, Runner
from server.runner.messages import CompletionRequest, LoadOptions, RunnerInfo
from server.runner.protocol import DecodedFrame, FrameDecoder, FrameError, encode

__all__ = [
    "CompletionChunk",
    "CompletionRequest",
    "EmbedResult",
    "LoadOptions",
    "RerankResult",
    "RunnerClient",
    "RunnerInfo",
    "runner_command",
]

STDERR_LINES = 200  # ring buffer of the runner's log
QUOTED_LINES = 6  # how many of them an error message quotes
CLOSE_GRACE_SECONDS = 5.0


def runner_command() -> list[str]:
    """How to start a runner: the hidden `runner` subcommand when frozen by PyInstaller."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "runner"]
    return [sys.executable, "-m", "server.runner"]


class RunnerClient:
    """A live runner process (a `server.runner.interface.Runner`). Create with `await RunnerClient.start(options, ...)`."""

    def __init__(self, proc: asyncio.subprocess.Process, options: LoadOptions, log: logging.Logger) -> None:
        self._proc = proc
        self.options = options
        self.pid = proc.pid
        self._log = log
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._decoder = FrameDecoder()
        self._next_id = 1
        self._streams: dict[int, asyncio.Queue[Any]] = {}
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._loaded: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._exit_callbacks: list[Callable[[], None]] = []
        self._alive = True
        self._closing = False
        self._death: RunnerError | None = None
        self._info: RunnerInfo | None = None
        self._stderr_task = asyncio.create_task(self._read_stderr(), name=f"runner-{proc.pid}-stderr")
        self._stdout_task = asyncio.create_task(self._read_stdout(), name=f"runner-{proc.pid}-stdout")

    # ---- life cycle -------------------------------------------------------------------

    @classmethod
    async def start(
        cls, options: LoadOptions, *, load_timeout: float | None = None, log: logging.Logger | None = None
    ) -> RunnerClient:
        """Spawn a runner, send it `load`, and wait until it has loaded the model."""
        log = log or logging.getLogger("pollama.runner")
        try:
            proc = await asyncio.create_subprocess_exec(
                *runner_command(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_env(),
            )
        except OSError as exc:
            raise RunnerError(f"could not start a runner for {options.model_path}: {exc}") from None
        client = cls(proc, options, log)
        try:
            client._send(m.Load(options))
            msg = await asyncio.wait_for(asyncio.shield(client._loaded), load_timeout)
        except TimeoutError:
            await client._kill()
            raise RunnerError(f"timed out after {load_timeout:g}s loading {options.model_path}") from None
        except BaseException:
            await client._kill()
            raise
        client._info = msg.info
        log.info("runner %d loaded %s (%s)", client.pid, options.model_path, msg.info.description)
        return client

    @property
    def info(self) -> RunnerInfo:
        """What the runner measured after loading; there once `start` has returned the client."""
        if self._info is None:
            raise RunnerError(f"the runner for {self.options.model_path} has not loaded its model yet")
        return self._info

    @property
    def alive(self) -> bool:
        return self._alive and self._proc.returncode is None

    def on_exit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once when the process is gone (crash or close)."""
        if not self._alive:
            callback()
        else:
            self._exit_callbacks.append(callback)

    def stderr_tail(self, n: int = QUOTED_LINES) -> list[str]:
        return list(self._stderr)[-n:]

    async def close(self) -> None:
        """End the process (closing stdin asks it to exit; it is killed if it lingers), which
        gives back all of the model's memory."""
        if self._closing:
            await self._stdout_task
            return
        self._closing = True
        if self._proc.returncode is None:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                await asyncio.wait_for(self._proc.wait(), CLOSE_GRACE_SECONDS)
            except (TimeoutError, OSError):
                await self._kill()
        await self._stdout_task

    async def _kill(self) -> None:
        self._closing = True
        if self._proc.returncode is None:
            try:
                self._proc.kill()
            except ProcessLookupError:
                pass
        await self._proc.wait()
        await self._stdout_task

    # ---- requests ---------------------------------------------------------------------

    async def completion(self, req: CompletionRequest) -> AsyncGenerator[CompletionChunk, None]:
        """Stream a completion. Leaving the loop early (the client went away) cancels it in
        the runner, which frees the slot within one step."""
        rid = self._new_id()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._streams[rid] = queue
        finished = False
        held: Any = None  # a message taken from the queue while merging pieces, next in line
        try:
            self._send(m.Completion(rid, req))
            while True:
                if held is not None:
                    msg, held = held, None
                else:
                    msg = await queue.get()
                if isinstance(msg, m.Piece):
                    # pieces that arrived while the caller was busy with the last chunk (a slow
                    # HTTP client, a busy event loop) become one chunk: less work per token
                    # for the server exactly when it is behind, and the same text
                    while not queue.empty():
                        more = queue.get_nowait()
                        if not isinstance(more, m.Piece):
                            held = more
                            break
                        msg = m.merge_pieces(msg, more)
                if isinstance(msg, BaseException):
                    finished = True
                    raise msg
                if isinstance(msg, m.Error):
                    finished = True
                    raise self._error(msg)
                if isinstance(msg, m.Piece):
                    yield CompletionChunk(
                        content=msg.content, logprobs=_logprobs(msg.logprobs), eval_count=msg.eval_count
                    )
                elif isinstance(msg, m.Done):
                    finished = True
                    yield CompletionChunk(
                        content=msg.content,
                        logprobs=_logprobs(msg.logprobs),
                        done=True,
                        done_reason=msg.done_reason,
                        prompt_eval_count=msg.prompt_eval_count,
                        prompt_eval_duration=msg.prompt_eval_duration,
                        eval_count=msg.eval_count,
                        eval_duration=msg.eval_duration,
                        prompt_count=msg.prompt_count,
                        stop_sequence=msg.stop_sequence,
                        draft_count=msg.draft_count,
                        draft_accepted_count=msg.draft_accepted_count,
                        truncated_tokens=msg.truncated_tokens,
                        context=list(msg.context) if msg.context is not None else None,
                    )
                    return
        finally:
            self._streams.pop(rid, None)
            if not finished and self.alive and not self._closing:
                self._send_quietly(m.Cancel(rid))

    async def embed(
        self, inputs: list[str], *, truncate: bool = True, normalize: bool = True, dimensions: int | None = None
    ) -> EmbedResult:
        msg = await self._call(lambda rid: m.Embed(rid, tuple(inputs), truncate, normalize, dimensions))
        return EmbedResult([list(v) for v in msg.vectors], msg.prompt_eval_count)

    async def rerank(self, query: str, documents: list[str], *, truncate: bool = True) -> RerankResult:
        msg = await self._call(lambda rid: m.Rerank(rid, query, tuple(documents), truncate))
        return RerankResult(list(msg.scores), msg.prompt_eval_count)

    async def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        msg = await self._call(lambda rid: m.Tokenize(rid, text, add_special, parse_special))
        return list(msg.tokens)

    async def token_pieces(
        self, text: str, *, add_special: bool = True, parse_special: bool = True
    ) -> list[tuple[int, str]]:
        """Each token of `text` with its text as output renders it (invalid UTF-8 replaced)."""
        msg = await self._call(lambda rid: m.Tokenize(rid, text, add_special, parse_special, True))
        return list(zip(msg.tokens, msg.pieces or (), strict=True))

    async def detokenize(self, tokens: list[int] | tuple[int, ...]) -> str:
        msg = await self._call(lambda rid: m.Detokenize(rid, tuple(int(t) for t in tokens)))
        return str(msg.text)

    async def health(self, timeout: float = 10.0) -> bool:
        """True when the process answers and has its model loaded."""
        if not self.alive:
            return False
        try:
            msg = await asyncio.wait_for(self._call(lambda rid: m.Health(rid)), timeout)
        except (TimeoutError, PollamaError):
            return False
        return msg.status == "ok"

    # ---- plumbing ---------------------------------------------------------------------

    def _new_id(self) -> int:
        rid = self._next_id
        self._next_id += 1
        return rid

    async def _call(self, build: Callable[[int], Any]) -> Any:
        rid = self._new_id()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[rid] = future
        try:
            self._send(build(rid))
            msg = await future
        except asyncio.CancelledError:  # the caller went away: the runner can drop the work (an embed job)
            if self.alive and not self._closing:
                self._send_quietly(m.Cancel(rid))
            raise
        finally:
            self._calls.pop(rid, None)
        if isinstance(msg, m.Error):
            raise self._error(msg)
        return msg

    def _send(self, msg: Any) -> None:
        if self._death is not None:
            raise RunnerError(self._death.message)
        if not self.alive or self._proc.stdin is None or self._proc.stdin.is_closing():
            raise RunnerError(f"the runner for {self.options.model_path} is not running")
        self._proc.stdin.write(encode(msg))

    def _send_quietly(self, msg: Any) -> None:
        try:
            self._send(msg)
        except (PollamaError, OSError, RuntimeError):
            pass

    def _error(self, msg: m.Error) -> PollamaError:
        if msg.kind == "bad_request":
            return BadRequest(msg.message)
        return RunnerError(msg.message)

    def _route(self, msg: Any) -> None:
        if isinstance(msg, DecodedFrame):
            self._log.warning("runner %d sent a bad frame (%s)", self.pid, msg.error)
        elif isinstance(msg, m.Loaded):
            if not self._loaded.done():
                self._loaded.set_result(msg)
        elif isinstance(msg, m.Error) and msg.id == 0:
            if not self._loaded.done():
                self._loaded.set_exception(
                    RunnerError(f"failed to load model {self.options.model_path}: {msg.message}")
                )
            else:
                self._log.error("runner %d: %s", self.pid, msg.message)
        elif isinstance(msg, (m.Piece, m.Done)) or (isinstance(msg, m.Error) and msg.id in self._streams):
            queue = self._streams.get(msg.id)
            if queue is not None:
                queue.put_nowait(msg)
        else:
            future = self._calls.get(getattr(msg, "id", -1))
            if future is not None and not future.done():
                future.set_result(msg)

    async def _read_stdout(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        try:
            while True:
                data = await stdout.read(1 << 16)
                if not data:
                    break
                for msg in self._decoder.feed(data):
                    self._route(msg)
        except FrameError as exc:
            self._log.error("runner %d broke the protocol: %s", self.pid, exc)
            self._proc.kill()
        except Exception:
            self._log.exception("runner %d: error reading its output", self.pid)
            self._proc.kill()
        await self._on_exit()

    async def _read_stderr(self) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        tail = b""
        while True:
            data = await stderr.read(1 << 16)
            if not data:
                break
            lines = (tail + data).split(b"\n")
            tail = lines.pop()
            for raw in lines:
                self._stderr_line(raw)
        if tail:
            self._stderr_line(tail)

    def _stderr_line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip()
        if line:
            self._stderr.append(line)
            # Which RPC workers a runner uses or skips is for the server log (a person set them
            # up and needs to know); per-request lines and llama.cpp's chatter are for debugging.
            level = logging.INFO if line.startswith("pollama runner:") and "RPC worker" in line else logging.DEBUG
            self._log.log(level, "runner %d: %s", self.pid, line)

    async def _on_exit(self) -> None:
        """stdout closed: the process is gone or going. Fail everything still waiting."""
        code = await self._proc.wait()
        try:
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 2.0)
        except TimeoutError:
            pass
        self._alive = False
        loading = not self._loaded.done()
        if self._closing and not loading:
            error = RunnerError(f"the runner for {self.options.model_path} was stopped")
        else:
            error = RunnerError(self._death_message(code, loading))
            self._log.warning("%s", error.message)
        self._death = error
        if loading:
            self._loaded.set_exception(error)
            self._loaded.exception()  # mark retrieved: a killed start() may not await it
        for queue in self._streams.values():
            queue.put_nowait(RunnerError(error.message))
        for future in self._calls.values():
            if not future.done():
                future.set_exception(RunnerError(error.message))
        callbacks, self._exit_callbacks = self._exit_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                self._log.exception("runner exit callback failed")

    def _death_message(self, code: int, loading: bool) -> str:
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        doing = "while loading" if loading else "unexpectedly"
        message = f"the runner for {self.options.model_path} {how} {doing}"
        tail = self.stderr_tail()
        if tail:
            message += ": " + " | ".join(tail)
        return message


def _logprobs(value: Any) -> list[dict[str, Any]] | None:
    return None if value is None else list(value)


if TYPE_CHECKING:  # the type checker proves that the process client is a `Runner`
    _: type[Runner] = RunnerClient
