"""The API client: where OLLAMA_HOST points, and how server errors read."""

from __future__ import annotations

import httpx
import pytest

from app.client import APIError, Client, ClientError, ServerUnreachable, _error_from, base_url
from app.formatting import float32_json
from tests.support.live_server import free_port


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        ("1.2.3.4:5678", "http://1.2.3.4:5678"),
        (":5678", "http://127.0.0.1:5678"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com", "https://example.com:443"),
        ("https://example.com:8443/ollama/", "https://example.com:8443/ollama"),
        ("'  localhost:1234 '", "http://localhost:1234"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("ollama.com", "https://ollama.com:443"),
    ],
)
def test_ollama_host_is_parsed_like_the_server_does(value: str, url: str) -> None:
    assert base_url({"OLLAMA_HOST": value}) == url


def test_invalid_ollama_host_is_a_readable_error() -> None:
    with pytest.raises(ClientError, match="OLLAMA_HOST"):
        base_url({"OLLAMA_HOST": "127.0.0.1:99999"})


def test_errors_take_the_json_message_or_the_body() -> None:
    r = httpx.Response(404, json={"error": "model 'x' not found"})
    assert (_error_from(r).message, _error_from(r).status) == ("model 'x' not found", 404)
    assert _error_from(httpx.Response(400, text="bad thing")).message == "bad thing"
    html = httpx.Response(500, text="<!doctype html><title>500</title>", headers={"content-type": "text/html"})
    assert _error_from(html).message == "500 Internal Server Error"


def test_nothing_listening_is_server_unreachable() -> None:
    with Client(f"http://127.0.0.1:{free_port()}") as client:
        with pytest.raises(ServerUnreachable, match="pollama serve"):
            client.list()
        with pytest.raises(ServerUnreachable):
            list(client.pull("x"))


def test_api_error_is_a_client_error() -> None:
    assert issubclass(APIError, ClientError) and issubclass(ServerUnreachable, ClientError)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (-0.23108960688114166, "-0.2310896"),
        (0.0840320736169815, "0.08403207"),
        (1.5e-7, "1.5e-7"),
        (100.0, "100"),
        (0.1, "0.1"),
        (3.4e38, "3.4e+38"),
    ],
)
def test_embedding_values_print_as_go_float32(value: float, text: str) -> None:
    assert float32_json(value) == text
