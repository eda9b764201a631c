"""Steer schemathesis' generated requests toward the models a fuzz server really has.

Left alone, a generator fills `model` with random text, so nearly every request is
a 404 and nothing past the name lookup is ever exercised. `steer_body` keeps the
generated body (types, odd values, extra keys) and rewrites only what decides
*where* a request goes and *how long* it takes:

* model names are drawn mostly from the fixture models (`FuzzTargets`), sometimes
  kept as generated;
* names that could reach a registry (pull, push, estimate, create `from`) only ever
  point at a loopback registry, at a loopback port where nothing listens, or are
  invalid names refused before any network;
* names an operation writes or deletes (create, copy `destination`, delete) are
  scratch names, never a fixture model the rest of the run relies on;
* chat message lists are, half the time, one plain user message (fuzzed ones are
  mostly refused before anything else in the body is looked at);
* options that cost time or memory (`num_ctx`, `num_predict`, `num_thread`, token
  limits of the compat APIs) are bounded; every other option keeps its fuzzed value.

The functions return Hypothesis strategies so shrinking still works on what is left
of the generated body.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from server.errors import InvalidModelName
from server.store.names import Name

#: Options that decide how a runner is loaded (a new value reloads the model): a few values only.
LOAD_OPTIONS: Mapping[str, tuple[Any, ...]] = {
    "num_ctx": (256, 512, 1024, 0, -1),
    "num_batch": (1, 64, 512, 4096, 0),
    "num_thread": (1, 2, 0, -3),
    "num_gpu": (0, -1, 999),
    "main_gpu": (0, 1, -1),
    "use_mmap": (True, False),
}
#: Largest number of tokens a fuzzed request may ask for (a tiny model emits one per step).
MAX_TOKENS = 8
#: Fields holding a token limit, per API: their values are bounded to MAX_TOKENS.
TOKEN_LIMIT_FIELDS = ("max_tokens", "max_output_tokens", "max_completion_tokens")


@dataclass(frozen=True)
class FuzzTargets:
    """What the fuzz server holds, and where its registry traffic may go."""

    generators: tuple[str, ...]  # models that complete and chat (and embed, as llama models do)
    embedders: tuple[str, ...]  # embedding-only models
    scratch: tuple[str, ...]  # names the fuzz may create, copy to and delete
    registry: str  # host:port of a loopback registry
    unreachable: str  # host:port on loopback where nothing listens

    @property
    def protected(self) -> frozenset[str]:
        """Fixture models, as canonical names: nothing the fuzz writes or deletes may be one of them."""
        return frozenset(_canonical(n) for n in self.generators + self.embedders if _canonical(n))

    def remote_names(self) -> tuple[str, ...]:
        """Registry names the fuzz may pull, push or estimate: all on loopback."""
        names = []
        for host in (self.registry, self.unreachable):
            names += [f"{host}/library/{m}:latest" for m in self.generators[:1]]
            names += [f"{host}/fuzz/{s.rsplit('/', 1)[-1]}" for s in self.scratch]
        return tuple(names)


def _canonical(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        name = Name.parse(text)
    except InvalidModelName:
        return None
    return f"{name.host}/{name.namespace}/{name.model}:{name.tag}".lower()


def _is_local_only(text: object, targets: FuzzTargets) -> bool:
    """Whether a generated name cannot make the server reach a registry that is not on loopback."""
    if not isinstance(text, str):
        return True
    try:
        name = Name.parse(text)
    except InvalidModelName:
        return True  # refused before any network
    return name.host in (targets.registry, targets.unreachable)


def _pick(choices: tuple[str, ...], original: object, *, keep: bool) -> st.SearchStrategy[Any]:
    """One of `choices`, or (about one time in len+1) the generated value when `keep`."""
    options: list[Any] = list(choices)
    if keep:
        options.append(original)
    return st.sampled_from(options)


def _bounded_options(options: object) -> st.SearchStrategy[Any]:
    if not isinstance(options, dict):
        return st.just(options)
    fixed: dict[str, st.SearchStrategy[Any]] = {}
    for key, value in options.items():
        if key in LOAD_OPTIONS:
            fixed[key] = st.sampled_from(LOAD_OPTIONS[key])
        elif key == "num_predict":
            fixed[key] = _bounded_limit(value)
        else:
            fixed[key] = st.just(value)
    return st.fixed_dictionaries(fixed)


def _bounded_limit(value: object) -> st.SearchStrategy[Any]:
    """A token limit: kept when it is not a number, is small, or is refused (below -2); else a small one.

    0, -1 and -2 are replaced too: each means "no limit" (Ollama's runner caps that at ten
    contexts, 20480 tokens for the tiny models, which never stop by themselves).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return st.just(value)
    if 0 < value <= MAX_TOKENS or value < -2:
        return st.just(value)
    return st.sampled_from((1, MAX_TOKENS))


def steer_body(targets: FuzzTargets, method: str, path: str, body: Any) -> st.SearchStrategy[Any]:
    """A strategy of bodies like `body`, steered for the operation `method path`."""
    if not isinstance(body, dict):
        return st.just(body)
    fields: dict[str, st.SearchStrategy[Any]] = {key: st.just(value) for key, value in body.items()}
    local = targets.generators + targets.embedders
    op = f"{method.upper()} {path}"

    def set_model(keys: tuple[str, ...], strategy_for: Any) -> None:
        present = [k for k in keys if k in body] or [keys[0]]
        for key in present:
            fields[key] = strategy_for(body.get(key))

    if op in ("POST /api/generate", "POST /api/chat", "POST /api/show") or path.startswith("/v1/"):
        order = targets.embedders + targets.generators if "embed" in path else local
        set_model(("model", "name"), lambda v: _pick(order, v, keep=True))
    elif op in ("POST /api/embed", "POST /api/embeddings"):
        set_model(("model",), lambda v: _pick(targets.embedders + targets.generators, v, keep=True))
    elif op == "POST /api/copy":
        fields["source"] = _pick(local + targets.scratch, body.get("source"), keep=True)
        fields["destination"] = _writable(targets, body.get("destination"))
    elif op == "DELETE /api/delete":
        set_model(("model", "name"), lambda v: _writable(targets, v))
    elif op == "POST /api/create":
        set_model(("model", "name"), lambda v: _writable(targets, v))
        if "from" in body or "files" not in body:
            original = body.get("from")
            fields["from"] = _pick(
                local + targets.scratch + targets.remote_names()[:2], original, keep=_is_local_only(original, targets)
            )
        modelfile = body.get("modelfile")
        if isinstance(modelfile, str) and re.search(r"(?im)^\s*from", modelfile):
            fields.pop("modelfile")  # its FROM line may name any registry; the field is fuzzed without one
    elif op in ("POST /api/pull", "POST /api/push", "POST /api/pollama/estimate"):
        names = targets.remote_names() + (local if "estimate" in path or "push" in path else ())

        def remote(v: object) -> st.SearchStrategy[Any]:
            return _pick(names, v, keep=_is_local_only(v, targets))

        set_model(("model", "name"), remote)
        if "insecure" not in body or not isinstance(body["insecure"], bool):
            fields["insecure"] = st.sampled_from((True, True, True, body.get("insecure", False)))
    if op in ("POST /v1/chat/completions", "POST /v1/messages", "POST /api/chat") and "messages" in body:
        # Fuzzed message lists are mostly refused (a role or part the API lacks): half the time one
        # plain user message, so the options and fields around it are exercised past that check
        fields["messages"] = st.sampled_from((body["messages"], [{"role": "user", "content": "hi"}]))
    if "options" in body:
        fields["options"] = _bounded_options(body["options"])
    for key in TOKEN_LIMIT_FIELDS:
        if key in body:
            fields[key] = _bounded_limit(body[key])
    return st.fixed_dictionaries(fields)


def _writable(targets: FuzzTargets, original: object) -> st.SearchStrategy[Any]:
    """A name the fuzz may write or delete: a scratch name, or the generated one unless it names a fixture."""
    return _pick(targets.scratch, original, keep=_canonical(original) not in targets.protected)


def steer_path_parameters(targets: FuzzTargets, path: str, params: dict[str, Any]) -> st.SearchStrategy[Any]:
    """`/v1/models/{model}`: mostly a fixture model."""
    if path == "/v1/models/{model}" and "model" in params:
        local = targets.generators + targets.embedders
        return st.fixed_dictionaries(
            {**{k: st.just(v) for k, v in params.items()}, "model": _pick(local, params["model"], keep=True)}
        )
    return st.just(params)
