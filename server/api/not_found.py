"""The 404 for a path no route serves, in the words of the API the path belongs to.

Ollama answers any unknown path with the plain text `404 page not found` (gin's
default), and native clients expect nothing else. An SDK pointed at `/v1` cannot
read that: the OpenAI SDKs look for `{"error": {"message", "type"}}` and the
Anthropic SDK for `{"type": "error", "error": {"type", "message"}}`, so a
mistyped route surfaced as an unreadable error. Under `/v1/messages` the answer
takes Anthropic's shape, elsewhere under `/v1/` OpenAI's, and everywhere else
Ollama's plain text.
"""

from __future__ import annotations

from quart import Response

from server.api.compat.anthropic import error_body as anthropic_error_body
from server.api.http import json_response
from server.api.openai import error_object as openai_error_object

PLAIN = "404 page not found"


def not_found_response(method: str, path: str) -> Response:
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        body = anthropic_error_body(404, f"{method} {path} is not a route of the Messages API")
        return json_response(body, 404, headers={"request-id": body["request_id"]})
    if path.startswith("/v1/"):
        return json_response(openai_error_object(404, f"Invalid URL ({method} {path})"), 404)
    return Response(PLAIN, status=404, content_type="text/plain")
