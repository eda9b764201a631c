"""The pre-v0.5.5 `modelfile` text of `/api/create`, turned into the structured request
without touching the server's disk.

Ollama's server up to 0.5.4 parsed this text itself. The clients of that time (its CLI,
ollama-js, ollama-python) uploaded each local file as a blob first and sent
`FROM @sha256:<hex>` / `ADAPTER @sha256:<hex>`, which the server looked up in its blob
store (`server/images.go`, `CreateModel`). Since 0.5.5 Ollama's server ignores the field
and its CLI sends the structured form. pollama still accepts the text so those clients
keep working, minus the part that made it a way to read any file the server can read:
a FROM or ADAPTER value that is a path is refused. Whether a value is a path is decided
by its spelling alone; the server never stats, opens or resolves it, so the answer says
nothing about the file and cannot block on a FIFO, a device or a network mount.
"""

from __future__ import annotations

from typing import Any

from server.errors import BadRequest
from server.store.blobs import parse_digest
from server.store.modelfile import parse as parse_modelfile
from server.store.names import Name

#: Names that end like model files are taken for files even where they would also be valid
#: model names (`FROM model.gguf`): pulling `model.gguf` from the registry is never what was meant.
_FILE_SUFFIXES = (".gguf", ".bin", ".safetensors")


def path_refused(command: str, value: str) -> BadRequest:
    """Ollama's answer to a create with no model (`neither 'from' or 'files' was specified`,
    `server/create.go`), with why a path does not count."""
    return BadRequest(
        f"neither 'from' or 'files' was specified: {command} {value!r} is a path, and the server does "
        "not read files from its disk; upload the file with POST /api/blobs/<digest> and name it in "
        "'files' (`pollama create` and `ollama create` do this for a Modelfile)"
    )


def looks_like_model_name(value: str) -> bool:
    return Name.parse_lenient(value).is_valid and not value.lower().endswith(_FILE_SUFFIXES)


def _blob_reference(value: str) -> str | None:
    """`@sha256:<hex>` (or `@sha256-<hex>`): a blob uploaded beforehand, as old clients send it."""
    if not value.startswith("@"):
        return None
    return parse_digest(value[1:])


def legacy_fields(text: str) -> dict[str, Any]:
    """The structured create fields a Modelfile text stands for; raises BadRequest for a path."""
    mf = parse_modelfile(text)
    body = mf.request_fields()
    files: dict[str, str] = {}
    adapters: dict[str, str] = {}
    for value in mf.from_values:
        digest = _blob_reference(value)
        if digest is not None:
            files[digest.replace(":", "-")] = digest
        elif looks_like_model_name(value):
            body["from"] = value
        else:
            raise path_refused("FROM", value)
    for value in mf.all("adapter"):
        digest = _blob_reference(value)
        if digest is None:
            raise path_refused("ADAPTER", value)
        adapters[digest.replace(":", "-")] = digest
    drafts: dict[str, str] = {}
    for value in mf.all("draft"):
        digest = _blob_reference(value)
        if digest is None:
            raise path_refused("DRAFT", value)
        drafts[digest.replace(":", "-")] = digest
    if files:
        body["files"] = files
    if adapters:
        body["adapters"] = adapters
    if drafts:
        body["draft_files"] = drafts
    return body
