"""`/api/show` and `/api/tags` entries: a model described in Ollama's words."""

from __future__ import annotations

import json
from typing import Any

from server.errors import PollamaError
from server.prompt.gotemplate import DEFAULT_TEMPLATE_TEXT
from server.store.capabilities import capabilities
from server.store.gguf_info import GGUFInfo, read_gguf
from server.store.modelfile import render as render_modelfile
from server.store.store import Model
from server.timefmt import rfc3339

_HIDDEN_KV = ("general.name", "tokenizer.chat_template")


def go_value(value: Any) -> str:
    """Go's `%#v` for the JSON values a params layer holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        f = float(value)
        return str(int(f)) if f.is_integer() and abs(f) < 1e21 else repr(f)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def parameters_text(params: dict[str, Any]) -> str:
    lines = []
    for key, value in params.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{key:<30} {go_value(v)}")
    return "\n".join(lines)


def tag_entry(model: Model) -> dict[str, Any]:
    name = model.name.display
    return {
        "name": name,
        "model": name,
        "modified_at": rfc3339(model.modified),
        "size": model.manifest.size,
        "digest": model.digest,
        "details": model.details(),
    }


def shown_template(model: Model, info: GGUFInfo | None) -> str | None:
    """The template a model renders with, as Ollama shows it: its TEMPLATE, else `{{ .Prompt }}`.

    Ollama's `server/images.go` `GetModel` starts every model from `template.DefaultTemplate`, so a
    model imported from a bare GGUF shows `{{ .Prompt }}` (in `template` and in its Modelfile).
    A GGUF whose own Jinja `tokenizer.chat_template` pollama renders shows none: that text is not a
    Go template, and `{{ .Prompt }}` is not what the model uses.
    """
    if model.template:
        return model.template
    if info is not None and info.chat_template:
        return None
    return DEFAULT_TEMPLATE_TEXT


def modelfile_text(
    model: Model,
    *,
    system: str | None = None,
    parameters: dict[str, Any] | None = None,
    template: str | None = None,
) -> str:
    params = dict(model.parameters)
    params.update(parameters or {})
    model_path = model.model_path
    return render_modelfile(
        header_name=model.name.display,
        from_lines=[str(model_path)] if model_path else [],
        adapters=[str(p) for p in model.adapter_paths],
        drafts=[str(model.draft_path)] if model.draft_path else [],
        projectors=[str(p) for p in model.projector_paths],
        template=template if template is not None else model.template,
        system=system if system is not None else model.system,
        parameters=params,
        licenses=model.licenses,
        messages=model.messages,
    )


def show(
    model: Model, *, verbose: bool = False, system: str | None = None, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    params = dict(model.parameters)
    params.update(options or {})
    out: dict[str, Any] = {}
    if model.licenses:
        out["license"] = "\n".join(model.licenses)
    info = model.gguf(verbose=verbose)
    template = shown_template(model, info)
    out["modelfile"] = modelfile_text(model, system=system, parameters=options, template=template)
    if params:
        out["parameters"] = parameters_text(params)
    if template:
        out["template"] = template
    sys_text = system if system is not None else model.system
    if sys_text:
        out["system"] = sys_text
    out["details"] = model.details()
    if model.messages:
        out["messages"] = [{"role": m.get("role", ""), "content": m.get("content", "")} for m in model.messages]
    model_info: dict[str, Any] = {}
    tensors: list[dict[str, Any]] = []
    if info is not None:
        model_info = {k: v for k, v in info.kv.items() if k not in _HIDDEN_KV}
        model_info.setdefault("general.parameter_count", info.parameter_count)
        tensors = info.tensors
    out["model_info"] = model_info
    for path in model.projector_paths:
        try:
            proj = read_gguf(path, verbose=verbose)
        except PollamaError:
            continue
        out["projector_info"] = {k: v for k, v in proj.kv.items() if k not in _HIDDEN_KV}
        break
    if tensors:
        out["tensors"] = tensors
    out["capabilities"] = capabilities(model)
    out["modified_at"] = rfc3339(model.modified)
    if model.config.get("requires"):
        out["requires"] = model.config["requires"]
    return out
