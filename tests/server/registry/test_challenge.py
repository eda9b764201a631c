"""`WWW-Authenticate` parsing and token URLs (Go's query encoding), without sockets."""

from __future__ import annotations

import base64
import hashlib

import pytest

from server.registry import challenge as ch


def test_parse_bearer_with_commas_in_scope() -> None:
    c = ch.parse('Bearer realm="https://r.example/token",service="r.example",scope="repository:library/x:pull,push"')
    assert c is not None and c.scheme == "bearer"
    assert c.realm == "https://r.example/token" and c.service == "r.example"
    assert c.scopes == ["repository:library/x:pull,push"]


def test_parse_basic_and_odd_spacing() -> None:
    c = ch.parse('Basic realm="Registry Realm"')
    assert c is not None and c.scheme == "basic" and c.realm == "Registry Realm"
    c = ch.parse('Bearer  realm="a" , service=svc,scope="s1 s2"')
    assert c is not None and c.service == "svc" and c.scopes == ["s1", "s2"]


@pytest.mark.parametrize("header", [None, "", "   "])
def test_parse_nothing(header: str | None) -> None:
    assert ch.parse(header) is None


def test_token_url_sorts_and_escapes_like_go() -> None:
    c = ch.parse('Bearer realm="https://r.example/v2/token?x=1",service="r.example",scope="repository:a/b:pull"')
    assert c is not None
    url = ch.signed_token_url(c, 1700000000, b"\x00" * 16)
    assert url == (
        "https://r.example/v2/token?nonce=AAAAAAAAAAAAAAAAAAAAAA&scope=repository%3Aa%2Fb%3Apull"
        "&service=r.example&ts=1700000000&x=1"
    )


def test_signing_payload_is_method_url_and_empty_body_digest() -> None:
    body = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()
    assert ch.signing_payload("GET", "https://h/t?a=b") == f"GET,https://h/t?a=b,{body}".encode()
    assert body == "ZTNiMGM0NDI5OGZjMWMxNDlhZmJmNGM4OTk2ZmI5MjQyN2FlNDFlNDY0OWI5MzRjYTQ5NTk5MWI3ODUyYjg1NQ=="
