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
import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.runner.ggml_backends import Ggml

#: How the environment names the workers a server's runners use.
WORKERS_ENV = "POLLAMA_RPC_WORKERS"
#: llama.cpp's rpc-server default port.
DEFAULT_PORT = 50052
#: How long a runner waits for a worker's TCP handshake before skipping it.
CONNECT_TIMEOUT = 3.0

SECURITY_WARNING = (
    "WARNING: the RPC protocol has no authentication and no encryption. Anyone who can reach "
    "{endpoint} can run code on this machine's devices and read what they hold. Never expose it "
    "to an untrusted network."
)


class RpcError(RuntimeError):
    """The RPC backend is missing or refused what was asked of it; the message says which."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @classmethod
    def parse(cls, text: str, *, default_port: int | None = None) -> Endpoint:
        """`host:port` (`[v6]:port` for IPv6); a clear ValueError for anything else."""
        raw = text.strip()
        host, sep, port_text = raw.rpartition(":")
        if raw.startswith("[") and "]" in raw:
            inside, _, rest = raw[1:].partition("]")
            host, port_text, sep = inside, rest.lstrip(":"), ":" if rest.startswith(":") else ""
        elif not sep or ":" in host:
            host, port_text = raw, ""
        if not host:
            raise ValueError(f"invalid RPC worker {text!r}: expected host:port")
        if not port_text:
            if default_port is None:
                raise ValueError(f"invalid RPC worker {text!r}: expected host:port")
            return cls(host, default_port)
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid RPC worker {text!r}: the port must be a number from 1 to 65535")
        return cls(host, int(port_text))


def parse_workers(text: str | None) -> tuple[Endpoint, ...]:
    """`POLLAMA_RPC_WORKERS`: comma-separated `host:port` (port defaults to 50052), no repeats."""
    if not text or not text.strip():
        return ()
    seen: list[Endpoint] = []
    for part in text.split(","):
        if not part.strip():
            continue
        endpoint = Endpoint.parse(part, default_port=DEFAULT_PORT)
        if endpoint not in seen:
            seen.append(endpoint)
    return tuple(seen)


def reachable(endpoint: Endpoint, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """None when a TCP connection to the worker opens, else why not (for the log line)."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout):
            return None
    except OSError as exc:
        return exc.strerror or str(exc)


# ---------------------------------------------------------------------------- libggml (runner, probe, worker)


def _registry(ggml: Ggml) -> int:
    """The RPC backend's registry in this process's ggml (backends already loaded)."""
    ggml._bind("ggml_backend_register", [ctypes.c_void_p], None)
    reg = ggml.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise RpcError(
            "this build of llama.cpp has no RPC backend: reinstall llama-cpp-python with "
            'CMAKE_ARGS="-DGGML_RPC=ON" (see the README, Workers), or use a pollama bundle'
        )
    return int(reg)


def _proc(ggml: Ggml, reg: int, name: str, restype: Any, argtypes: list[Any]) -> Callable[..., Any]:
    """A function the RPC backend exports by name (its registry's proc-address table)."""
    address = ggml.ggml_backend_reg_get_proc_address(reg, name.encode())
    if not address:
        raise RpcError(f"the RPC backend does not export {name}")
    prototype = ctypes.CFUNCTYPE(restype, *argtypes)
    return prototype(address)


def add_workers_to(ggml: Ggml, endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """Register each reachable worker's devices with ggml; return those added.

    Called by `ggml_backends.load()` while it fills the registry, so every
    device list after it (the probe's report, the runner's offload choice)
    has the workers in it. A worker that is down or speaks another protocol
    version is skipped with a line on stderr: the model then loads on what is
    left, as llama.cpp does."""
    wanted = list(endpoints)
    if not wanted:
        return []
    reg = _registry(ggml)
    add_server = _proc(ggml, reg, "ggml_backend_rpc_add_server", ctypes.c_void_p, [ctypes.c_char_p])
    added = []
    for endpoint in wanted:
        if (why := reachable(endpoint)) is not None:
            sys.stderr.write(f"pollama runner: skipping RPC worker {endpoint}: {why}\n")
            continue
        worker_reg = add_server(str(endpoint).encode())
        if not worker_reg:
            sys.stderr.write(
                f"pollama runner: skipping RPC worker {endpoint}: it offers no device "
                "(another llama.cpp RPC protocol version?)\n"
            )
            continue
        ggml.ggml_backend_register(worker_reg)
        added.append(endpoint)
        sys.stderr.write(f"pollama runner: using RPC worker {endpoint}\n")
    return added


def serve(endpoint: Endpoint, *, threads: int, cache_dir: str | None, device_names: Iterable[str] = ()) -> None:
    """Serve this machine's devices on `endpoint` until the process ends (blocks in C).

    Devices: the ones named, else the GPUs, else the CPU — rpc-server's choice
    (tools/rpc/rpc-server.cpp `get_devices`)."""
    from server.runner import ggml_backends

    report = ggml_backends.load()
    ggml = ggml_backends.process_ggml()
    reg = _registry(ggml)
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
    start = _proc(
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
