"""Check HTTP responses against `docs/openapi.yaml`.

One spec object, loaded once::

    spec = OpenAPISpec.load()
    spec.validate_response("GET", "/api/tags", 200, body_bytes, "application/json; charset=utf-8")

JSON bodies are validated whole, `application/x-ndjson` bodies line by line, and
`text/event-stream` bodies event by event (the JSON of each `data:` field;
`data: [DONE]` is skipped). A mismatch raises `AssertionError` naming the
operation, the status, where in the body it went wrong and why.

Validating everything a test receives takes one line:

* an httpx client (or an `ollama.Client`, which wraps one):
  `install_httpx_hook(client)`; each response is checked once its body has been
  read, streamed responses included (the stream is not buffered up front);
* a response already in hand (`httpx.post(...)`): `spec.check(response)`;
* a fresh client: `spec.client(base_url)`.

Schemas are JSON Schema 2020-12 (the OpenAPI 3.1 dialect), validated with
`openapi_schema_validator.OAS31Validator` when installed, else jsonschema's
`Draft202012Validator`. `date-time` is checked as Go writes it: RFC 3339, at
most nanoseconds, trailing zeros of the fraction trimmed.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import yaml
from jsonschema.exceptions import ValidationError, best_match, relevance
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

try:
    from openapi_schema_validator import OAS31Validator as _Validator
except ImportError:  # pragma: no cover - the package is optional
    _Validator = jsonschema.Draft202012Validator

REPO = Path(__file__).resolve().parents[2]
SPEC_PATH = REPO / "docs" / "openapi.yaml"
SPEC_URI = "urn:pollama:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

#: Go's `time.Time` JSON: RFC 3339, fraction of 1–9 digits without trailing zeros.
_DATE_TIME = re.compile(
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d{0,8}[1-9])?(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)

FORMAT_CHECKER = jsonschema.FormatChecker(formats=())


@FORMAT_CHECKER.checks("date-time")
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATE_TIME.match(value))


def _pointer_escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _excerpt(body: bytes | str, limit: int = 600) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def normalize_template(path: str) -> str:
    """`/api/blobs/<digest>`, `/api/blobs/{digest}`, `/x/<path:rest>` → `/api/blobs/{}`."""
    path = re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "{}", path)
    return re.sub(r"\{[^{}]+\}", "{}", path)


@dataclass(frozen=True)
class Operation:
    """One documented (method, path template) pair."""

    method: str  # upper case
    template: str  # as written in the spec, e.g. /api/blobs/{digest}
    definition: dict[str, Any]
    pointer: str  # JSON pointer of the operation in the spec

    @property
    def statuses(self) -> list[str]:
        return list(self.definition.get("responses", {}))

    def response(self, status: int) -> tuple[str, dict[str, Any]] | None:
        responses = self.definition.get("responses", {})
        for key in (str(status), f"{status // 100}XX", "default"):
            if key in responses:
                return key, responses[key]
        return None

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


class OpenAPISpec:
    """The loaded spec: operations by path, and cached validators per schema."""

    def __init__(self, document: dict[str, Any], path: Path | None = None) -> None:
        self.document = document
        self.path = path
        self.registry: Registry = Registry().with_resource(
            SPEC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self._paths: list[tuple[str, re.Pattern[str], int]] = []
        for template, item in document.get("paths", {}).items():
            greedy = self._greedy_params(item)
            regex = "".join(
                (".+" if part[1:-1] in greedy else "[^/]+") if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{[^{}]+\})", template)
            )
            literal = len(re.sub(r"\{[^{}]+\}", "", template))
            self._paths.append((template, re.compile(f"^{regex}$"), literal))
        # most literal characters first: /v1/models before /v1/models/{model}
        self._paths.sort(key=lambda item: -item[2])
        self._validators: dict[str, Any] = {}

    def _greedy_params(self, item: dict[str, Any]) -> set[str]:
        """Path parameters marked `x-pollama-allow-slash: true` (a model name like `user/m:tag`)."""
        params = list(item.get("parameters", []))
        for method in HTTP_METHODS:
            params += (item.get(method) or {}).get("parameters", [])
        out = set()
        for param in params:
            param, _ = self.deref(param) if isinstance(param, dict) else (param, "")
            if isinstance(param, dict) and param.get("in") == "path" and param.get("x-pollama-allow-slash") is True:
                out.add(param["name"])
        return out

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str = SPEC_PATH) -> OpenAPISpec:
        return _load_cached(str(Path(path).resolve()))

    def deref(self, node: dict[str, Any], pointer: str = "") -> tuple[dict[str, Any], str]:
        """Follow a local `$ref` (responses/parameters), returning the target and its pointer."""
        seen = 0
        while isinstance(node, dict) and "$ref" in node and seen < 20:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise AssertionError(f"{self._name()}: only local $refs are supported, got {ref!r}")
            pointer = ref[1:]
            node = self.document
            for part in pointer.split("/")[1:]:
                part = part.replace("~1", "/").replace("~0", "~")
                try:
                    node = node[part]
                except (KeyError, TypeError):
                    raise AssertionError(f"{self._name()}: unresolvable $ref {ref!r}") from None
            seen += 1
        return node, pointer

    def _name(self) -> str:
        try:
            return str(self.path.relative_to(REPO)) if self.path else "openapi spec"
        except ValueError:
            return str(self.path)

    # ---- operations ----------------------------------------------------------------------

    def templates(self) -> list[str]:
        return list(self.document.get("paths", {}))

    def match_path(self, path: str) -> str | None:
        """The documented template a concrete path matches (`/api/blobs/sha256:ab` → `/api/blobs/{digest}`)."""
        path = urlsplit(path).path or "/"
        for template, regex, _ in self._paths:
            if regex.match(path):
                return template
        return None

    def operations(self) -> Iterator[Operation]:
        for template, item in self.document.get("paths", {}).items():
            for method in HTTP_METHODS:
                if method in item:
                    yield self._operation(template, method)

    def _operation(self, template: str, method: str) -> Operation:
        pointer = f"/paths/{_pointer_escape(template)}/{method}"
        definition = self.document["paths"][template][method]
        return Operation(method.upper(), template, definition, pointer)

    def find_operation(self, method: str, path: str) -> Operation | None:
        """The operation for a concrete request, or None when it is not documented."""
        template = self.match_path(path)
        if template is None:
            return None
        item = self.document["paths"][template]
        if method.lower() not in item:
            return None
        return self._operation(template, method.lower())

    def operation(self, method: str, path: str) -> Operation:
        """The operation for a concrete request; AssertionError when it is not documented."""
        op = self.find_operation(method, path)
        if op is not None:
            return op
        template = self.match_path(path)
        if template is None:
            raise AssertionError(f"{method.upper()} {path}: no path in {self._name()} matches")
        documented = sorted(m.upper() for m in self.document["paths"][template] if m in HTTP_METHODS)
        raise AssertionError(
            f"{method.upper()} {path}: {template} is documented only for {', '.join(documented)} in {self._name()}"
        )

    def has_route(self, method: str, template: str) -> bool:
        """Whether a route template (Quart `<x>` or OpenAPI `{x}` params) is documented for `method`."""
        wanted = normalize_template(template)
        for documented, item in self.document.get("paths", {}).items():
            if normalize_template(documented) == wanted and method.lower() in item:
                return True
        return False

    # ---- validation ----------------------------------------------------------------------

    def validator(self, pointer: str) -> Any:
        """A cached validator for the schema at `pointer` (e.g. `/components/schemas/Error`)."""
        found = self._validators.get(pointer)
        if found is None:
            found = _Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry, format_checker=FORMAT_CHECKER)
            self._validators[pointer] = found
        return found

    def schema_errors(self, pointer: str, instance: Any) -> list[ValidationError]:
        return sorted(self.validator(pointer).iter_errors(instance), key=relevance)

    def validate(self, schema_name: str, instance: Any, *, where: str = "") -> None:
        """Validate against `components/schemas/<schema_name>`."""
        pointer = f"/components/schemas/{_pointer_escape(schema_name)}"
        errors = self.schema_errors(pointer, instance)
        if errors:
            raise AssertionError(self._report(where or schema_name, pointer, errors, json.dumps(instance)))

    def validate_request(self, method: str, path: str, body: Any, content_type: str = "application/json") -> None:
        """Validate a request body (already decoded JSON) against the operation's requestBody."""
        op = self.operation(method, path)
        request_body = op.definition.get("requestBody")
        if request_body is None:
            raise AssertionError(f"{op} documents no request body")
        request_body, pointer = self.deref(request_body, op.pointer + "/requestBody")
        media = _media_type(content_type)
        if media not in request_body.get("content", {}):
            raise AssertionError(f"{op}: request content type {media!r} is not documented")
        schema_pointer = f"{pointer}/content/{_pointer_escape(media)}/schema"
        errors = self.schema_errors(schema_pointer, body)
        if errors:
            raise AssertionError(self._report(f"{op} request", schema_pointer, errors, json.dumps(body)))

    def validate_response(
        self,
        method: str,
        path: str,
        status: int,
        body: bytes | str,
        content_type: str | None,
        *,
        only_documented: bool = False,
        partial: bool = False,
    ) -> None:
        """Check one response against the spec; AssertionError says what is wrong.

        `partial`: the body is the start of a stream the client stopped reading; the complete
        NDJSON lines / SSE events in it are checked, and nothing else.

        A request the spec does not know is accepted when the server refused it as Ollama does:
        404 for a path no template matches, 405 for a documented path with another method.
        With `only_documented`, responses to undocumented paths are not checked at all (for hooks
        on clients that also talk to other servers).
        """
        method = method.upper()
        body_bytes = body.encode() if isinstance(body, str) else bytes(body)
        url_path = urlsplit(path).path or "/"
        op = self.find_operation(method, url_path)
        head = method == "HEAD"
        if op is None and head:
            op = self.find_operation("GET", url_path)  # HEAD answers like GET, without a body
        if op is None and method == "OPTIONS":
            # CORS preflights are answered by the CORS/Host layer on any path, never by an operation
            if status in (204, 403, 404, 405):
                if status in (204, 403) and body_bytes.strip():
                    raise AssertionError(
                        f"OPTIONS {url_path} → {status}: expected an empty body, got {_excerpt(body_bytes)}"
                    )
                return
        if op is None:
            template = self.match_path(url_path)
            if template is None and (status == 404 or only_documented):
                return
            if template is not None and status == 405:
                return
            self.operation(method, url_path)  # raises the readable "not documented"
            return
        found = op.response(status)
        where = f"{method} {url_path} → {status}"
        if found is None:
            raise AssertionError(
                f"{where}: status {status} is not documented for {op} "
                f"(documented: {', '.join(op.statuses)}); body: {_excerpt(body_bytes)}"
            )
        key, response = found
        response, pointer = self.deref(response, f"{op.pointer}/responses/{key}")
        if head:
            return
        content = response.get("content") or {}
        if not content:
            if body_bytes.strip():
                raise AssertionError(
                    f"{where}: {op} documents no body for {key}, got {content_type!r}: {_excerpt(body_bytes)}"
                )
            return
        media = _media_type(content_type)
        documented = self._match_media(media, content)
        if documented is None:
            raise AssertionError(
                f"{where}: content type {content_type!r} is not documented for {op} {key} "
                f"(documented: {', '.join(content)}); body: {_excerpt(body_bytes)}"
            )
        if partial:
            if documented == "application/x-ndjson":
                body_bytes = body_bytes[: body_bytes.rfind(b"\n") + 1]
            elif documented == "text/event-stream":
                end = max(body_bytes.rfind(b"\n\n"), body_bytes.rfind(b"\r\n\r\n"))
                body_bytes = body_bytes[: end + 2] if end >= 0 else b""
            else:
                return
            if not body_bytes.strip():
                return
        if not body_bytes.strip():
            raise AssertionError(f"{where}: {op} documents a {documented} body for {key}, got an empty body")
        media_def = content[documented]
        if "schema" not in media_def:
            return
        schema_pointer = f"{pointer}/content/{_pointer_escape(documented)}/schema"
        where = f"{where} {documented}"
        for label, instance, raw in self._instances(documented, body_bytes, where):
            errors = self.schema_errors(schema_pointer, instance)
            if errors:
                raise AssertionError(self._report(f"{where}{label}", schema_pointer, errors, raw))

    @staticmethod
    def _match_media(media: str, content: dict[str, Any]) -> str | None:
        if media in content:
            return media
        major = media.split("/", 1)[0]
        for candidate in (f"{major}/*", "*/*"):
            if candidate in content:
                return candidate
        return None

    def _instances(self, media: str, body: bytes, where: str) -> Iterator[tuple[str, Any, str]]:
        """(label, decoded instance, raw text) for each unit the schema describes."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AssertionError(f"{where}: body is not UTF-8 ({exc})") from None
        if media == "application/x-ndjson":
            if not text.endswith("\n"):
                raise AssertionError(f"{where}: NDJSON lines must be newline-terminated; body: {_excerpt(text)}")
            lines = text.split("\n")[:-1]
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                yield f" (line {number} of {len(lines)})", _json(line, f"{where} line {number}"), line
        elif media == "text/event-stream":
            events = list(parse_sse(text))
            if not events:
                raise AssertionError(f"{where}: no events in the stream; body: {_excerpt(text)}")
            for number, (event, data) in enumerate(events, 1):
                if data == "[DONE]":
                    continue
                label = f" (event {number} of {len(events)}{', ' + event if event else ''})"
                instance = _json(data, f"{where}{label}")
                kind = instance.get("type") if isinstance(instance, dict) else None
                if event and isinstance(kind, str) and kind != event:
                    raise AssertionError(f"{where}{label}: event name {event!r} differs from data type {kind!r}")
                yield label, instance, data
        elif media == "application/json" or media.endswith("+json"):
            yield "", _json(text, where), text
        elif media.startswith("text/"):
            yield "", text, text

    def _report(self, where: str, pointer: str, errors: list[ValidationError], raw: str) -> str:
        leaves: list[ValidationError] = []
        best = best_match(errors)
        for error in [best] + [e for e in errors if e is not best]:
            for leaf in _leaves(error):
                if not any(leaf is seen for seen in leaves):
                    leaves.append(leaf)
        lines = [f"{where} does not match {self._name()} (#{pointer}):"]
        for leaf in leaves[:8]:
            lines.extend(_explain(leaf))
        if len(leaves) > 8:
            lines.append(f"  … and {len(leaves) - 8} more")
        lines.append(f"  body: {_excerpt(raw)}")
        return "\n".join(lines)

    # ---- one-line helpers for tests --------------------------------------------------------

    def check(self, response: httpx.Response) -> httpx.Response:
        """Validate an httpx response whose body has been read; returns it for chaining."""
        request = response.request
        self.validate_response(
            request.method,
            request.url.path,
            response.status_code,
            response.content,
            response.headers.get("content-type"),
        )
        return response

    def client(self, base_url: str = "", **kwargs: Any) -> httpx.Client:
        """An httpx.Client whose every response is validated."""
        return install_httpx_hook(httpx.Client(base_url=base_url, **kwargs), self)

    def async_client(self, base_url: str = "", **kwargs: Any) -> httpx.AsyncClient:
        return install_httpx_hook(httpx.AsyncClient(base_url=base_url, **kwargs), self)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> OpenAPISpec:
    with open(path, encoding="utf-8") as f:
        document = yaml.safe_load(f)
    if not isinstance(document, dict):
        raise AssertionError(f"{path}: not a YAML mapping")
    return OpenAPISpec(document, Path(path))


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"{where}: not JSON ({exc.msg} at column {exc.colno}): {_excerpt(text)}") from None


def _branch_name(error: ValidationError, index: Any) -> str:
    try:
        branch = error.schema[error.validator][index]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return f"branch {index}"
    if isinstance(branch, dict) and isinstance(branch.get("$ref"), str):
        return branch["$ref"].rsplit("/", 1)[-1]
    if isinstance(branch, dict):
        kind = branch.get("properties", {}).get("type", {})
        if isinstance(kind, dict) and "const" in kind:
            return f"type={kind['const']}"
    return f"branch {index}"


def _leaves(error: ValidationError) -> list[ValidationError]:
    """The specific reasons behind an error: for a failed oneOf/anyOf, those of its closest branch.

    When no branch is clearly closest, the error itself is returned (`_explain` lists the branches).
    """
    if not error.context:
        return [error]
    best = best_match([error])  # descends into the branch that came closest
    while best is not None and best.parent is not None and best.parent is not error:
        best = best.parent
    if best is None or best.parent is not error or not best.relative_schema_path:
        return [error]
    branch = best.relative_schema_path[0]
    same = [e for e in error.context if e.relative_schema_path and e.relative_schema_path[0] == branch]
    out: list[ValidationError] = []
    for e in sorted(same, key=relevance, reverse=True):
        out.extend(_leaves(e))
    return out or [error]


def _explain(error: ValidationError) -> list[str]:
    if not error.context:
        return [f"  at {error.json_path}: {error.message}"]
    lines = [f"  at {error.json_path}: matches none of the {error.validator} alternatives:"]
    branches: dict[Any, list[ValidationError]] = {}
    for e in error.context:
        if e.relative_schema_path:
            branches.setdefault(e.relative_schema_path[0], []).append(e)
    for index, errs in branches.items():
        reasons = "; ".join(f"{e.json_path}: {e.message}" for e in errs[:4])
        lines.append(f"    - {_branch_name(error, index)}: {reasons}")
    return lines


def parse_sse(text: str) -> Iterator[tuple[str, str]]:
    """(event name, data) for each event of a `text/event-stream` body."""
    data: list[str]
    event, data, seen = "", [], False
    for line in re.split(r"\r\n|\r|\n", text):
        if not line:
            if seen:
                yield event, "\n".join(data)
            event, data, seen = "", [], False
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
            seen = True
        elif name == "event":
            event = value
            seen = True
    if seen:
        yield event, "\n".join(data)


# ---- httpx integration ---------------------------------------------------------------------


class _Tee:
    """Collects a response body as it is read; checks it when read to the end, or when closed early."""

    def __init__(self, inner: Any, done: Callable[..., None]) -> None:
        self._inner = inner
        self._done = done
        self._buf = bytearray()
        self._checked = False

    def _finish(self, *, partial: bool) -> None:
        if not self._checked:
            self._checked = True
            self._done(bytes(self._buf), partial=partial)


class _TeeStream(_Tee, httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._inner:
            self._buf += chunk
            yield chunk
        self._finish(partial=False)

    def close(self) -> None:
        self._inner.close()
        self._finish(partial=True)


class _AsyncTeeStream(_Tee, httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._buf += chunk
            yield chunk
        self._finish(partial=False)

    async def aclose(self) -> None:
        await self._inner.aclose()
        self._finish(partial=True)


def _validate_later(spec: OpenAPISpec, response: httpx.Response, only_documented: bool) -> Callable[..., None]:
    request = response.request
    method, path = request.method, request.url.path
    status, content_type = response.status_code, response.headers.get("content-type")
    encoding = response.headers.get("content-encoding", "identity").lower()

    def done(body: bytes, partial: bool = False) -> None:
        if encoding not in ("", "identity"):
            return  # raw bytes are compressed; pollama never compresses
        spec.validate_response(
            method, path, status, body, content_type, only_documented=only_documented, partial=partial
        )

    return done


def install_httpx_hook(client: Any, spec: OpenAPISpec | None = None, *, only_documented: bool = False) -> Any:
    """Validate every response `client` receives against the spec; returns `client`.

    `client` is an `httpx.Client`/`httpx.AsyncClient`, or anything wrapping one in `_client`
    (`ollama.Client`, `ollama.AsyncClient`). The body is checked when it has been read to the
    end, so streams stay streams; of a stream closed half way (the `ollama` client stops at an
    `{"error": ...}` line), the complete lines/events read so far are checked.
    """
    spec = spec or OpenAPISpec.load()
    http = client if isinstance(client, (httpx.Client, httpx.AsyncClient)) else getattr(client, "_client", None)
    if isinstance(http, httpx.Client):

        def hook(response: httpx.Response) -> None:
            done = _validate_later(spec, response, only_documented)
            if hasattr(response, "_content"):  # built with its content (e.g. httpx.MockTransport)
                done(response.content)
            else:
                response.stream = _TeeStream(response.stream, done)

    elif isinstance(http, httpx.AsyncClient):

        async def hook(response: httpx.Response) -> None:  # type: ignore[misc]
            done = _validate_later(spec, response, only_documented)
            if hasattr(response, "_content"):
                done(response.content)
            else:
                response.stream = _AsyncTeeStream(response.stream, done)

    else:
        raise TypeError(f"not an httpx client (or a wrapper of one): {client!r}")
    hooks = http.event_hooks
    hooks["response"] = [*hooks.get("response", []), hook]
    http.event_hooks = hooks
    return client


def validate_all(responses: Iterable[httpx.Response], spec: OpenAPISpec | None = None) -> None:
    """`check` each of several read responses."""
    spec = spec or OpenAPISpec.load()
    for response in responses:
        spec.check(response)
