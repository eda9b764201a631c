"""pollama's own endpoints, under `/api/pollama/` so they never collide with Ollama's.

Ollama has no way to ask "what devices do I have and how much memory is
free?" or "will this model fit before I load it (or before I download it)?";
the desktop app needs both. The estimate of a model not pulled yet reads its
manifest and GGUF header from the registry (`server/registry/remote_model.py`)
and is then computed by the very code a local model's is.
`/api/version` answers with the Ollama API version, so pollama's own is here.
`/api/pollama/count` says how many tokens a chat request takes once its template
is applied, before sending it (Ollama reports it only after generating).
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from quart import Blueprint, Response

from server import OLLAMA_API_VERSION, __version__
from server.api.context import services
from server.api.http import field, json_response, read_json
from server.config import Config
from server.errors import BadRequest, PollamaError
from server.gpu import backend_report, gpu_devices, system_memory
from server.inference.requests import ChatRequest
from server.jsontypes import JSONObject
from server.options import DEFAULT_OPTIONS, Options, validate_options
from server.registry.errors import Unreachable
from server.registry.remote_model import RemoteModel, inspect
from server.runner.ggml_backends import BackendReport
from server.scheduler import RunnerSpec, Scheduler, estimate_memory, free_memory_for
from server.store.gguf_info import GGUFInfo
from server.store.names import Name
from server.store.store import Model

bp = Blueprint("pollama_ext", __name__)


@bp.route("/api/pollama/version", methods=["GET"])
async def version() -> Response:
    return json_response({"version": __version__, "ollama_api": OLLAMA_API_VERSION})


@bp.route("/api/pollama/devices", methods=["GET"])
async def devices() -> Response:
    devs, mem = await asyncio.gather(asyncio.to_thread(gpu_devices), asyncio.to_thread(system_memory))
    report = await asyncio.to_thread(backend_report)  # after gpu_devices: a Vulkan build probed there
    return json_response(
        {
            "devices": [d.to_json() for d in devs],
            "system_memory": {"total": mem.total, "free": mem.free},
            "ggml": None if report is None else ggml_json(report),
        }
    )


def ggml_json(report: BackendReport) -> dict[str, object]:
    """What the runners load, as `/api/pollama/devices` reports it (its devices are above)."""
    return {
        "backends": list(report.backends),
        "dynamic": report.dynamic,
        "cpu_variant": report.cpu_variant,
        "cpu_library": report.cpu_library,
        "cpu_features": list(report.cpu_features),
        "skipped": [{"backend": s.backend, "library": s.library, "reason": s.reason} for s in report.skipped],
    }


@bp.route("/api/pollama/count", methods=["POST"])
async def count() -> Response:
    """A native `/api/chat` body → its prompt's token count and the context it would run in."""
    body = await read_json()
    count = await services().inference.count_chat(ChatRequest.from_json(body))
    return json_response({"model": body.get("model"), "tokens": count.tokens, "context_length": count.context_length})


@bp.route("/api/pollama/estimate", methods=["POST"])
async def estimate() -> Response:
    """A local model's estimate; for one not here, the same estimate from its registry's manifest and GGUF header."""
    body = await read_json()
    raw = field(body, "model", str, "")
    if not raw:
        raise BadRequest("model is required")
    insecure = bool(field(body, "insecure", bool, False))
    svc = services()
    requested = validate_options(body.get("options"))
    name = Name.parse(raw)
    model = svc.store.get(name)
    if model is None:
        registry = svc.registry
        try:
            remote = await registry.context.call(
                functools.partial(inspect, registry.transport, name, insecure=insecure, endpoints=registry.endpoints)
            )
        except Unreachable as exc:
            raise PollamaError(
                f"'{name.display}' is not a local model, and its registry cannot be asked: {exc}", 502
            ) from None
        options = {**DEFAULT_OPTIONS, **remote.parameters, **requested}
        return json_response(await asyncio.to_thread(_remote_estimate, svc.config, svc.scheduler, remote, options))
    # the generation routes' checks (a context or batch of no tokens is refused, so no size
    # comes out negative) and the scheduler's own clamps and spec: the estimate is of the
    # runner a request with these options would load
    options = {**DEFAULT_OPTIONS, **model.parameters, **requested}
    return json_response(await asyncio.to_thread(_estimate, svc.config, svc.scheduler, model, options))


def _estimate(config: Config, scheduler: Scheduler, model: Model, options: Options) -> JSONObject:
    info = model.gguf()
    if model.model_path is None:
        raise BadRequest(f"model '{model.name.display}' has no weights")
    spec = scheduler.spec_for(model, options)
    sizes = sum(Path(p).stat().st_size for p in (spec.model_path, *spec.projectors, *spec.adapters))
    return {"model": model.name.display, **_answer(config, spec, info, sizes), "local": True}


def _remote_estimate(config: Config, scheduler: Scheduler, remote: RemoteModel, options: Options) -> JSONObject:
    """As `_estimate` would answer once the model is pulled: the spec is made the same way, from the
    header read over the network, and the sizes are the manifest's (the files a pull writes)."""
    layer = remote.model_layer
    spec = scheduler.spec_from(
        remote.info,
        f"{remote.name.display}@{layer.digest}",
        options,
        projectors=tuple(f"projector-{i}" for i in range(len(remote.projector_sizes))),
        adapters=tuple(f"adapter-{i}" for i in range(len(remote.adapter_sizes))),
        model_params=remote.parameters,
        file_sizes=remote.file_sizes,
    )
    return {
        "model": remote.name.display,
        **_answer(config, spec, remote.info, remote.file_sizes),
        "local": False,
        "download_size": remote.download_size,
        "header_bytes": remote.header_bytes,
    }


def _answer(config: Config, spec: RunnerSpec, info: GGUFInfo | None, sizes: int) -> JSONObject:
    est = estimate_memory(spec, info, sizes)
    devices = gpu_devices()
    # as the scheduler will count it when loading: less OLLAMA_GPU_OVERHEAD and the runner's context
    free = free_memory_for(spec, devices, lambda: devices, system_memory, config.gpu_overhead)
    return {
        "context_length": spec.num_ctx,
        "num_parallel": spec.num_parallel,
        "weights": est.weights,
        "kv_cache": est.kv_cache,
        "compute": est.compute,
        "total": est.total,
        "device": "gpu" if devices else "cpu",
        "free_memory": free,
        "fits": est.total <= free,
    }
