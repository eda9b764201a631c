"""What `/metrics` reports, in Prometheus' text format (ollama/ollama#3144 asks Ollama for it).

Everything is counted off the token hot path: a request is counted once, when its
response is ready (route, method, status, model); a generation once, from its
final chunk, which carries the token counts and durations the runner measured
(so time to first token and per-token latency cost nothing per token). Queue
depth, loaded models and pull bytes are not counted at all: a collector reads
them from the scheduler and the download hub when Prometheus scrapes.

One `Metrics` per app, with its own `CollectorRegistry`: nothing at module
level, so two servers in one process (the tests) count apart.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from server.inference.events import Embeddings, Event, Final
from server.scheduler import Scheduler

#: Time to first token: a loaded model answers in tens of ms; a cold load takes seconds to minutes.
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Mean seconds per generated token: 1 ms (a tiny model on a GPU) to 1 s (a big one on a CPU).
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0)
REQUEST_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass
class RequestFacts:
    """What a request learns while it runs that its count needs: the model, once it was found."""

    model: str = ""


#: The facts of the request being handled (set by the app's before-request hook).
current_request: contextvars.ContextVar[RequestFacts | None] = contextvars.ContextVar(
    "pollama_request_facts", default=None
)


@dataclass(frozen=True)
class GenerationStats:
    """The numbers of a final chunk (Ollama's `api.Metrics`, durations in nanoseconds)."""

    prompt_tokens: int
    output_tokens: int
    load_ns: int
    prompt_ns: int
    eval_ns: int

    @classmethod
    def of(cls, final: Final) -> GenerationStats:
        s = final.stats
        return cls(s.prompt_eval_count, s.eval_count, s.load_duration, s.prompt_eval_duration, s.eval_duration)


class Metrics:
    """The app's metrics; `observe_request` and `observe_generation` are its only writers."""

    def __init__(self, scheduler: Scheduler, pulled_bytes: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "pollama_requests", "HTTP requests answered", ["route", "method", "status", "model"], registry=r
        )
        self.request_seconds = Histogram(
            "pollama_request_duration_seconds",
            "Time until the response began (a stream's headers), by route",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter("pollama_prompt_tokens", "Prompt tokens evaluated", ["model"], registry=r)
        self.output_tokens = Counter("pollama_generated_tokens", "Tokens generated", ["model"], registry=r)
        self.ttft = Histogram(
            "pollama_time_to_first_token_seconds",
            "Load wait plus prompt evaluation of each generation",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.token_seconds = Histogram(
            "pollama_time_per_output_token_seconds",
            "Mean decode time per generated token, one observation per generation",
            ["model"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        r.register(SchedulerCollector(scheduler))
        r.register(PullCollector(pulled_bytes))
        ProcessCollector(registry=r)  # the server process's memory, CPU and open files (Linux)

    def observe_request(self, route: str, method: str, status: int, model: str, seconds: float) -> None:
        self.requests.labels(route or "unmatched", method, str(status), model).inc()
        self.request_seconds.labels(route or "unmatched").observe(seconds)

    def observe_generation(self, model: str, stats: GenerationStats) -> None:
        if stats.prompt_tokens:
            self.prompt_tokens.labels(model).inc(stats.prompt_tokens)
        if stats.output_tokens:
            self.output_tokens.labels(model).inc(stats.output_tokens)
            self.ttft.labels(model).observe((stats.load_ns + stats.prompt_ns) / 1e9)
            self.token_seconds.labels(model).observe(stats.eval_ns / stats.output_tokens / 1e9)


class SchedulerCollector(Collector):
    """Queue depth and loaded models, read from the scheduler at scrape time."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        scheduler = self._scheduler
        queue = GaugeMetricFamily(
            "pollama_queue_depth", "Requests waiting for a model to load or for a free slot of its runner"
        )
        loaded = GaugeMetricFamily("pollama_loaded_models", "Models loaded in runner processes")
        memory = GaugeMetricFamily(
            "pollama_loaded_model_memory_bytes",
            "Memory of each loaded model (as /api/ps reports it), in system RAM and in VRAM",
            labels=["model", "memory"],
        )
        entries = scheduler.ps()
        queue.add_metric([], scheduler.queue_depth())
        loaded.add_metric([], len(entries))
        for entry in entries:
            vram = entry["size_vram"]
            memory.add_metric([entry["name"], "ram"], max(0, entry["size"] - vram))
            memory.add_metric([entry["name"], "vram"], vram)
        yield from (queue, loaded, memory)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class PullCollector(Collector):
    """Bytes pulled from registries, read from the download hub at scrape time."""

    def __init__(self, pulled_bytes: Callable[[], int]) -> None:
        self._pulled_bytes = pulled_bytes

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("pollama_pull_bytes", "Bytes downloaded by pulls (resumed bytes count once)")
        family.add_metric([], self._pulled_bytes())
        yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())


class MeteredInference:
    """The inference service with its generations counted; every other attribute is the service's.

    A stream is looked at once per chunk only to keep the last one; the count happens when
    the stream ends, from that final chunk.
    """

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def generate(self, req: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Event]:
        return self._counted(req.model, self.inner.generate(req, *args, **kwargs))

    def chat(self, req: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Event]:
        return self._counted(req.model, self.inner.chat(req, *args, **kwargs))

    async def embed(self, req: Any) -> Embeddings:
        facts = current_request.get()
        result: Embeddings = await self.inner.embed(req)
        if facts is not None:
            facts.model = req.model
        if result.prompt_eval_count:
            self.metrics.prompt_tokens.labels(req.model).inc(result.prompt_eval_count)
        return result

    async def embeddings(self, model: str, *args: Any, **kwargs: Any) -> list[float]:
        facts = current_request.get()
        result: list[float] = await self.inner.embeddings(model, *args, **kwargs)
        if facts is not None:
            facts.model = model
        return result

    async def _counted(self, model: str, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        facts = current_request.get()
        last: Event | None = None
        try:
            async for event in events:
                if last is None and facts is not None:
                    facts.model = model  # the model exists: a label of bounded cardinality
                last = event
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            if isinstance(last, Final):
                self.metrics.observe_generation(model, GenerationStats.of(last))
