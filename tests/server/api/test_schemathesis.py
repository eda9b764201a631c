"""Fuzz every operation of `docs/openapi.yaml` with schemathesis against a live server.

Issue 18's last acceptance item: a bounded run (fixed seed, a few examples per
operation and generation mode) over the spec, against a real `pollama serve` holding
tiny models, with a loopback registry for pull and push. It passes when

* no response is a 5xx, except a status the spec documents as an upstream failure
  (`x-pollama-upstream-failure: true` on the response: the registry, not pollama, failed);
* every status, content type and body is what the spec documents; streamed bodies are
  checked line by line (NDJSON) or event by event (SSE) against the schema the spec
  gives for one line or event (`tests/support/openapi.py`);
* afterwards the server still answers, no runner crashed (the server log names none),
  and the runners loaded before the run that the run did not unload on purpose
  (keep_alive 0, an unload request, a reload with other options) still run.

Every case is sent even after a failure (nothing is shrunk), and all failures are
reported together, each with a curl command that reproduces it.

Generation is steered (`tests/support/fuzz_steering.py`): model fields name the
fixture models most of the time, registry names stay on loopback, writes go to
scratch names, and options that cost time (context size, token limits, threads) are
bounded. Nothing is excluded: every documented operation is fuzzed.

Wall time of this file with `-n 1` on the 2-core development machine, measured 2026-12-03:
247-299 s for the whole file (~900 cases) while five other helpers built and tested on it (load
average 13-20); with 12 examples instead of 25, 34 s (443 cases in 30 s) at a lighter load.
On a quiet machine the file should take about a minute; EXAMPLES is the knob.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import hypothesis.errors
import ollama
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.gguf_models import write_llama_model
from tests.support.fuzz_steering import MAX_TOKENS, FuzzTargets, steer_body, steer_path_parameters
from tests.support.live_server import LiveServer, free_port
from tests.support.openapi import SPEC_PATH, OpenAPISpec
from tests.support.registry import RegistryServer, registry_available

SEED = 18  # issue 18
EXAMPLES = 25  # per operation and generation mode
CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
REGISTRY_PORT = free_port()
UNREACHABLE_PORT = free_port()  # nothing listens here: a registry that cannot be reached

TARGETS = FuzzTargets(
    generators=("tiny", "seer", "bare"),
    embedders=("bert",),
    scratch=("fuzz-a", "fuzz-b:v1", "fuzz/c:latest"),
    registry=f"127.0.0.1:{REGISTRY_PORT}",
    unreachable=f"127.0.0.1:{UNREACHABLE_PORT}",
)

SPEC = OpenAPISpec.load()


def _upstream_statuses() -> dict[str, list[int]]:
    """Per operation id, the 5xx statuses the spec documents as an upstream failure."""
    out: dict[str, list[int]] = {}
    for op in SPEC.operations():
        for status, response in op.definition.get("responses", {}).items():
            response, _ = SPEC.deref(response)
            if status.startswith("5") and response.get("x-pollama-upstream-failure") is True:
                out.setdefault(op.definition["operationId"], []).append(int(status))
    return out


UPSTREAM = _upstream_statuses()

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": EXAMPLES, "database": "none", "deterministic": True, "allow-x00": True},
        "operations": [
            {
                "include-operation-id": op_id,
                "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", *statuses]}},
            }
            for op_id, statuses in UPSTREAM.items()
        ],
    }
)
SCHEMA = schemathesis.openapi.from_path(SPEC_PATH, config=CONFIG)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: For a stream, schemathesis validates each parsed event (`{"event", "data"}`, the data a string) against
#: the schema, while the spec's schema describes the JSON inside `data` (and NDJSON lines it does not parse);
#: `_stream_check` validates those line by line and event by event instead.
STREAM_CHECKS = [c for c in CHECKS if c is not response_schema_conformance]
STREAMS = ("text/event-stream", "application/x-ndjson")


@SCHEMA.hook("flatmap_body")
def _steer_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    assert context.operation is not None
    return steer_body(TARGETS, context.operation.method, context.operation.path, body)


@SCHEMA.hook("flatmap_path_parameters")
def _steer_path(context: schemathesis.HookContext, params: dict[str, Any]) -> st.SearchStrategy[Any]:
    assert context.operation is not None
    return steer_path_parameters(TARGETS, context.operation.path, params)


@dataclass
class Fuzzed:
    server: LiveServer
    runners_before: dict[str, int]  # model → runner pid, loaded before the run
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    succeeded: set[str] = field(default_factory=set)  # operations answered 2xx at least once


def _create(client: ollama.Client, name: str, files: dict[str, Path], **kwargs: Any) -> None:
    digests = {filename: client.create_blob(path) for filename, path in files.items()}
    client.create(model=name, files=digests, stream=False, **kwargs)


@pytest.fixture(scope="module")
def fuzz_server(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_path: Path,
    bert_model_path: Path,
    tiny_projector_path: Path,
) -> Iterator[Fuzzed]:
    root = tmp_path_factory.mktemp("fuzz")
    registry = RegistryServer(root / "registry", port=REGISTRY_PORT).start() if registry_available() else None
    closed = f"http://127.0.0.1:{UNREACHABLE_PORT}"
    env = {
        "OLLAMA_NUM_PARALLEL": "2",
        "OLLAMA_KEEP_ALIVE": "-1",
        "OLLAMA_MAX_LOADED_MODELS": "4",
        # Anything that would leave loopback goes to a proxy that is not there, and fails at once.
        "HTTPS_PROXY": closed,
        "HTTP_PROXY": closed,
        "NO_PROXY": "127.0.0.1,localhost",
        "POLLAMA_PULL_RETRIES": "1",
        "POLLAMA_PULL_BACKOFF": "0",
    }
    server = LiveServer(root / "models", env=env).start()
    try:
        client = ollama.Client(host=server.url)
        # A request that sets no limit stops after MAX_TOKENS (the tiny models never stop by themselves)
        bounded = {"num_predict": MAX_TOKENS}
        vision = {"model.gguf": tiny_model_path, "mmproj.gguf": tiny_projector_path}
        bare = write_llama_model(root / "bare.gguf", chat_template=None)
        _create(client, "tiny", {"model.gguf": tiny_model_path}, template=CHATML, parameters=bounded)
        _create(client, "seer", vision, template=CHATML, parameters=bounded)
        _create(client, "bare", {"model.gguf": bare}, parameters=bounded)  # no template at all: `{{ .Prompt }}`
        _create(client, "bert", {"model.gguf": bert_model_path})
        if registry is not None:
            client.copy("tiny", f"{TARGETS.registry}/library/tiny")
            client.push(f"{TARGETS.registry}/library/tiny", insecure=True, stream=False)
        client.generate(model="tiny", prompt="hi", options={"num_predict": 1})
        client.embed(model="bert", input="hi")
        runners = {m.model: m for m in client.ps().models}
        pids = _runner_pids(server)
        assert len(pids) == len(runners) == 2, (pids, runners)
        yield Fuzzed(server, _pids_by_model(server, pids))
    finally:
        server.stop()
        if registry is not None:
            registry.stop()


def _runner_pids(server: LiveServer) -> list[int]:
    return sorted(server.runner_pids())


def _pids_by_model(server: LiveServer, pids: list[int]) -> dict[str, int]:
    """model → runner pid, read from the server log's `runner <pid> loaded <path>` lines."""
    out: dict[str, int] = {}
    log = server.log_path.read_text(errors="replace")
    for pid in pids:
        found = re.findall(rf"runner {pid} loaded (\S+)", log)
        out[found[-1] if found else str(pid)] = pid
    return out


def _stream_check(case: schemathesis.Case, response: schemathesis.Response) -> None:
    """Every NDJSON line / SSE event (and every JSON body) against the spec, via tests/support/openapi.py."""
    SPEC.validate_response(
        case.method,
        case.formatted_path,
        response.status_code,
        response.content,
        response.headers.get("content-type", [None])[0],
    )


def _run_operation(fuzzed: Fuzzed, operation: schemathesis.APIOperation, mode: GenerationMode) -> None:
    seen: set[str] = set()
    label = f"{operation.label} ({mode.value})"

    @hypothesis.seed(SEED)
    @hypothesis.settings(
        max_examples=EXAMPLES,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=hypothesis.Verbosity.quiet,
    )
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        fuzzed.counts[label] = fuzzed.counts.get(label, 0) + 1
        try:
            response = case.call(base_url=fuzzed.server.url, timeout=60)
        except Exception as exc:  # a dropped connection, a timeout: the server failed this request
            _record(fuzzed, seen, label, f"request failed: {exc!r}", case)
            return
        if 200 <= response.status_code < 300:
            fuzzed.succeeded.add(operation.label)
        media = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
        checks = STREAM_CHECKS if media in STREAMS else CHECKS
        for check in (lambda: case.validate_response(response, checks=checks), lambda: _stream_check(case, response)):
            try:
                check()
            except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis raises a FailureGroup
                _record(fuzzed, seen, label, str(exc), case)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # Negative mode finds nothing to break in a lone string path parameter (any text is a string)
        if mode is not GenerationMode.NEGATIVE:
            raise


def _record(fuzzed: Fuzzed, seen: set[str], label: str, message: str, case: schemathesis.Case) -> None:
    first_line = message.strip().splitlines()[0] if message.strip() else message
    key = re.sub(r"\d+", "N", first_line)[:120]
    if key in seen or len(seen) >= 5:
        return
    seen.add(key)
    curl = case.as_curl_command(headers=None)
    fuzzed.failures.append(f"{label}: {message.strip()[:1500]}\n  reproduce: {curl[:1500]}")


def test_the_api_survives_a_bounded_fuzz(fuzz_server: Fuzzed) -> None:
    started = time.monotonic()
    operations = [result.ok() for result in SCHEMA.get_all_operations()]
    assert len(operations) == len(list(SPEC.operations()))
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_operation(fuzz_server, operation, mode)
    elapsed = time.monotonic() - started

    total = sum(fuzz_server.counts.values())
    summary = f"{total} cases over {len(operations)} operations in {elapsed:.0f} s"
    print(summary)
    assert not fuzz_server.failures, summary + "\n\n" + "\n\n".join(fuzz_server.failures)
    # The steering works: every operation that runs a model got past the name lookup and answered
    reached = {"POST /api/generate", "POST /api/chat", "POST /api/embed", "POST /api/embeddings", "POST /api/show"}
    reached |= {"POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings", "POST /v1/responses"}
    reached |= {"POST /v1/messages", "GET /v1/models/{model}", "POST /api/copy", "DELETE /api/delete"}
    reached |= {"POST /api/pollama/estimate"} | (
        {"POST /api/pull", "POST /api/push"} if registry_available() else set()
    )
    assert reached <= fuzz_server.succeeded, f"never answered 2xx: {sorted(reached - fuzz_server.succeeded)}"
    _check_survivors(fuzz_server)


def _check_survivors(fuzzed: Fuzzed) -> None:
    """The server answers, no runner crashed, and the runners loaded before the run ran on unless unloaded."""
    server = fuzzed.server
    assert server.proc is not None and server.proc.poll() is None, f"the server exited:\n{server.log()}"
    version = httpx.get(server.url + "/api/version", timeout=10)
    assert version.status_code == 200, version.text
    log = server.log_path.read_text(errors="replace")
    crashed = [line for line in log.splitlines() if re.search(r"runner \d+ (exited|broke|sent a bad)|Traceback", line)]
    assert not crashed, "\n".join(crashed[:20]) + "\n" + server.log()
    ps = httpx.get(server.url + "/api/ps", timeout=10)
    assert ps.status_code == 200, ps.text
    running = set(_runner_pids(server))
    assert len(running) == len(ps.json()["models"]), (running, ps.text)  # each runner reported is alive, no other
    gone = {model: pid for model, pid in fuzzed.runners_before.items() if pid not in running}
    unloads = len(re.findall(r"unloading \S+", log))
    assert len(gone) <= unloads, f"runners ended without an unload: {gone}\n{server.log()}"
