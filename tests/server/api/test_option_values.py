"""No option value may crash a runner: random and extreme values for every option in
`server/options.py`, sent to a live server with real runners (a llama model, a BERT
embedding model, and the llama model with a vision projector).

Every answer is a 200 or a 400 naming one of the options sent (or, for a JSON value Go
refuses, such as NaN, a 400 JSON error). Sampling options leave the runners exactly as
they were: the same processes before and after. Load options may legitimately reload a
runner; then no runner may have died (the server logs a runner's death with its signal
or exit status, `server/runner/client.py`) and a fresh request to the model still works.

Fixed seed (`derandomize`), a bounded number of examples, streams closed after their
first lines (a huge num_predict is the model's to honour, not the test's to wait for).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from server.options import DEPRECATED_OPTIONS, OPTION_TYPES, RUNNER_OPTIONS
from tests.fixtures.images import gradient
from tests.server.api.test_openai_api import CHATML, create
from tests.support.live_server import LiveServer

#: How the server logs a runner that died (`RunnerClient._death_message`); "was stopped" is a close.
RUNNER_DEATH = re.compile(r"the runner for \S+ (was killed by \S+|exited with status -?\d+)")

SAMPLING_OPTIONS = sorted(set(OPTION_TYPES) - set(RUNNER_OPTIONS)) + sorted(DEPRECATED_OPTIONS)[:3]
LOAD_OPTIONS = sorted(RUNNER_OPTIONS)


@dataclass(frozen=True)
class Raw:
    """A JSON literal Python's json module does not write (1e999), spliced in as text."""

    text: str


NON_FINITE = [float("nan"), float("inf"), float("-inf"), Raw("1e999"), Raw("-1e999"), Raw("1" + "0" * 400)]
INT_EXTREMES = [0, 1, -1, -2, 2, 3, 7, 16, 17, 100, 514, 2**31 - 1, 2**31, -(2**31), 2**32, 2**63 - 1, 2**63, -(2**63)]
FLOAT_EXTREMES = [0.0, 1.0, -1.0, 0.5, -0.5, 1e-45, 1e-30, 1e300, -1e300, 3.5e38, -3.5e38, 2.0**63]
HUGE_STOPS = [["x" * 100_000], ["stop", "<|im_end|>"] * 2_500, [""] * 1_000, ["\n", "a", " "]]
WRONG_TYPES: list[Any] = [True, False, "", "x", "12", "y" * 200_000, [], [1], {}, {"a": 1}, 10**30]
_INTS = st.one_of(st.sampled_from(INT_EXTREMES), st.integers(), st.integers(-3, 70))
_FLOATS = st.one_of(st.sampled_from(FLOAT_EXTREMES), st.floats(allow_nan=False, allow_infinity=False))
_STOPS = st.one_of(st.sampled_from(HUGE_STOPS), st.lists(st.text(max_size=8), max_size=6))
TYPED: dict[type, st.SearchStrategy[Any]] = {
    int: st.one_of(_INTS, _INTS, _FLOATS),
    float: st.one_of(_FLOATS, _FLOATS, _INTS),
    bool: st.booleans(),
    list: _STOPS,
}


def value_for(name: str) -> st.SearchStrategy[Any]:
    """Mostly a value of the option's own type (so that it reaches the runner), now and then a
    wrong type or a number JSON cannot hold."""
    typed = TYPED[OPTION_TYPES.get(name, float)]
    return st.one_of(typed, typed, typed, typed, typed, st.sampled_from(WRONG_TYPES), st.sampled_from(NON_FINITE))


def options_of(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    chosen = st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)
    return chosen.flatmap(lambda keys: st.fixed_dictionaries({k: value_for(k) for k in keys}))


def encode(body: dict[str, Any]) -> bytes:
    """`body` as JSON, with NaN/Infinity as Python writes them and Raw literals as given."""
    raws: list[str] = []

    def default(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"__raw_{len(raws) - 1}__"
        raise TypeError(value)

    text = json.dumps(body, default=default)
    for i, raw in enumerate(raws):
        text = text.replace(f'"__raw_{i}__"', raw)
    return text.encode()


def non_finite(value: Any) -> bool:
    return isinstance(value, Raw) or (isinstance(value, float) and not math.isfinite(value))


IMAGE = base64.b64encode(gradient()).decode()
#: (model, route, body without options) — every model kind, through the routes that load it.
TARGETS: list[tuple[str, str, dict[str, Any]]] = [
    ("tiny", "/api/generate", {"prompt": "hello there"}),
    ("tiny", "/api/chat", {"messages": [{"role": "user", "content": "hello"}]}),
    ("tiny", "/api/embed", {"input": ["hello", "world"]}),
    ("bert", "/api/embed", {"input": ["hello world " * 40, "x"]}),
    ("bert", "/api/embeddings", {"prompt": "hello"}),
    ("seer", "/api/chat", {"messages": [{"role": "user", "content": "look", "images": [IMAGE]}]}),
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path, bert_model_path: Path, tiny_projector_path: Path
) -> Iterator[LiveServer]:
    models = tmp_path_factory.mktemp("option-values") / "models"
    env = {"OLLAMA_NUM_PARALLEL": "2", "OLLAMA_KEEP_ALIVE": "30m", "OLLAMA_MAX_LOADED_MODELS": "4"}
    srv = LiveServer(models, env=env).start()
    try:
        client = ollama.Client(host=srv.url)
        create(client, "tiny", tiny_model_path, template=CHATML)
        create(client, "bert", bert_model_path)
        files = {
            "model.gguf": client.create_blob(tiny_model_path),
            "mmproj.gguf": client.create_blob(tiny_projector_path),
        }
        client.create(model="seer", files=files, template=CHATML, stream=False)
        yield srv
    finally:
        srv.stop()


class Prober:
    """Sends one request and judges the answer; follows the server log for runner deaths."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url, timeout=180)
        self.log_offset = 0

    def new_deaths(self) -> list[str]:
        text = self.server.log_path.read_text(errors="replace")
        fresh, self.log_offset = text[self.log_offset :], len(text)
        return [m.group(0) for m in RUNNER_DEATH.finditer(fresh)]

    def send(self, target: tuple[str, str, dict[str, Any]], options: dict[str, Any] | None) -> tuple[int, str]:
        """(status, error message or ""). Streams are read for a few lines, then closed."""
        model, route, body = target
        payload: dict[str, Any] = {"model": model, **body}
        if options is not None:
            payload["options"] = options
        streams = route in ("/api/generate", "/api/chat")
        if streams:
            payload["stream"] = True
        headers = {"content-type": "application/json"}
        with self.http.stream("POST", route, content=encode(payload), headers=headers) as r:
            if r.status_code != 200:
                r.read()
                return r.status_code, str(r.json().get("error", r.text))
            if streams:
                for i, line in enumerate(r.iter_lines()):
                    event = json.loads(line)
                    if "error" in event:  # a failure after the stream began
                        return 500, str(event["error"])
                    if event.get("done") or i >= 5:
                        break
            else:
                r.read()
                assert r.json(), route
        return 200, ""

    def judge(self, options: dict[str, Any], status: int, error: str) -> None:
        event(f"answered {status}")
        if any(non_finite(v) for v in options.values()):
            assert status == 400, (options, status, error)
            assert "invalid character" in error or "out of range" in error, error
            return
        assert status in (200, 400), (options, status, error)
        if status == 400:
            assert any(name in error for name in options), (options, error)


@pytest.fixture(scope="module")
def prober(server: LiveServer) -> Iterator[Prober]:
    probe = Prober(server)
    for target in TARGETS:  # every runner loaded with the models' own options
        assert probe.send(target, None)[0] == 200, target
    yield probe
    probe.http.close()


SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=SLOW)
@given(target=st.sampled_from(TARGETS), options=options_of(SAMPLING_OPTIONS))
def test_sampling_option_values_keep_every_runner(
    prober: Prober, target: tuple[str, str, dict[str, Any]], options: dict[str, Any]
) -> None:
    before = sorted(prober.server.runner_pids())
    status, error = prober.send(target, options)
    prober.judge(options, status, error)
    assert prober.new_deaths() == []
    assert sorted(prober.server.runner_pids()) == before, (options, "a runner was replaced")


@settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=SLOW)
@given(target=st.sampled_from(TARGETS), options=options_of(LOAD_OPTIONS))
def test_load_option_values_never_kill_a_runner(
    prober: Prober, target: tuple[str, str, dict[str, Any]], options: dict[str, Any]
) -> None:
    before = set(prober.server.runner_pids())
    status, error = prober.send(target, options)
    prober.judge(options, status, error)
    event("reloaded" if set(prober.server.runner_pids()) != before else "same runner")
    assert prober.new_deaths() == [], options
    # a fresh request to the runner those options loaded (or, when they were refused, to the
    # model's own): it answers, so the server and its runner still work
    again, error = prober.send(target, options if status == 200 else None)
    assert again == 200, error
    assert prober.new_deaths() == [], options
    assert prober.server.runner_pids()
