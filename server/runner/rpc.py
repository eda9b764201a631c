"""llama.cpp's RPC backend: lend this machine's devices to a server, or use another's.

llama.cpp already has a distributed engine: its RPC backend (`ggml-rpc`) makes
a remote machine's devices look like local GPUs, and llama.cpp then splits a
model's layers across all devices in proportion to their free memory, as it
does across local GPUs. pollama adds no protocol of its own:

* `pollama worker` calls the backend's own `ggml_backend_rpc_start_server`
  (what llama.cpp's `rpc-server` tool does, tools/rpc/rpc-server.cpp), found
  through the registry's proc-address table so it works with a build that
  links the backend in and with one that loads it as a module
  (`GGML_BACKEND_DL`, the bundles), frozen or not;
* a runner (and the device probe) given `POLLAMA_RPC_WORKERS` adds each
  worker with `ggml_backend_rpc_add_server` + `ggml_backend_register`, as
  llama.cpp's `common/arg.cpp` `add_rpc_devices` does for `--rpc`, before it
  loads a model; the workers' devices (named `RPC0`, `RPC1`, … described by
  their endpoint) then count as GPUs in the fit and in `/api/pollama/devices`.

The protocol has no authentication and no encryption: anyone who can reach a
worker's port can run code on its devices and read what they hold. Workers
bind 127.0.0.1 unless told otherwise, and say so loudly when they are not.

Loads libggml, so only runner, probe and worker processes import the parts
that touch it (the parsing helpers at the top are safe anywhere).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable

from server.runner import ggml_backends
from server.runner.rpc_endpoints import (
    SECURITY_WARNING,
    WORKERS_ENV,
    Endpoint,
    RpcError,
    parse_workers,
)

__all__ = ["SECURITY_WARNING", "WORKERS_ENV", "Endpoint", "RpcError", "parse_workers", "serve"]


def serve(endpoint: Endpoint, *, threads: int, cache_dir: str | None, device_names: Iterable[str] = ()) -> None:
    """Serve this machine's devices on `endpoint` until the process ends (blocks in C).

    Devices: the ones named, else the GPUs, else the CPU — rpc-server's choice
    (tools/rpc/rpc-server.cpp `get_devices`)."""
    report = ggml_backends.load()
    ggml = ggml_backends.process_ggml()
    reg = ggml_backends.rpc_registry(ggml)
    names = list(device_names)
    if names:
        unknown = sorted(set(names) - {d.name for d in report.devices})
        if unknown:
            have = ", ".join(d.name for d in report.devices)
            raise RpcError(f"no device named {', '.join(unknown)} (this machine has: {have})")
    else:
        gpus = [d for d in ggml_backends.offload_devices(report.devices) if d.backend != "RPC"]
        names = [d.name for d in gpus] or [d.name for d in report.devices if d.type == "cpu"][:1]
    handles = ggml_backends.device_handles(names)
    if not handles:
        raise RpcError("no device to serve")
    start = ggml_backends.rpc_function(
        ggml,
        reg,
        "ggml_backend_rpc_start_server",
        None,
        [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p],
    )
    devices = (ctypes.c_void_p * len(handles))(*handles)
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
    start(
        str(endpoint).encode(),
        os.fsencode(cache_dir) if cache_dir else None,
        max(1, threads),
        len(handles),
        ctypes.cast(devices, ctypes.c_void_p),
    )
