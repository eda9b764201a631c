"""`HF_ENDPOINT` sends `hf.co/...` and `huggingface.co/...` names to another base URL; other names are untouched."""

from __future__ import annotations

import pytest

from server.config import ConfigError
from server.registry.endpoints import Endpoints
from server.registry.errors import RegistryError
from server.registry.transport import Repository
from server.store.names import Name

NAME = Name.parse("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M")


def test_without_hf_endpoint_hf_co_is_hf_co() -> None:
    repo = Repository.of(NAME, insecure=False, endpoints=Endpoints.from_env({}))
    assert repo.manifest_url("Q4_K_M") == "https://hf.co/v2/bartowski/Llama-3.2-1B-Instruct-GGUF/manifests/Q4_K_M"


@pytest.mark.parametrize("host", ["hf.co", "huggingface.co", "HF.CO"])
def test_hf_endpoint_replaces_both_hugging_face_hosts(host: str) -> None:
    endpoints = Endpoints.from_env({"HF_ENDPOINT": "https://hf-mirror.example/"})
    repo = Repository.of(Name.parse(f"{host}/u/r:Q8_0"), insecure=False, endpoints=endpoints)
    assert repo.blob_url("sha256:" + "a" * 64) == f"https://hf-mirror.example/v2/u/r/blobs/sha256:{'a' * 64}"


def test_hf_endpoint_keeps_its_path_and_leaves_other_registries_alone() -> None:
    endpoints = Endpoints.from_env({"HF_ENDPOINT": "https://hub.example/mirror"})
    assert Repository.of(NAME, insecure=False, endpoints=endpoints).manifest_url("latest") == (
        "https://hub.example/mirror/v2/bartowski/Llama-3.2-1B-Instruct-GGUF/manifests/latest"
    )
    other = Repository.of(Name.parse("llama3.2"), insecure=False, endpoints=endpoints)
    assert other.manifest_url("latest") == "https://registry.ollama.ai/v2/library/llama3.2/manifests/latest"


def test_plain_http_only_on_loopback_or_when_insecure() -> None:
    loopback = Endpoints.from_env({"HF_ENDPOINT": "http://127.0.0.1:8123"})
    assert Repository.of(NAME, insecure=False, endpoints=loopback).base == "http://127.0.0.1:8123"
    assert Repository.of(NAME, insecure=False, endpoints=Endpoints.from_env({"HF_ENDPOINT": "http://localhost"}))
    remote = Endpoints.from_env({"HF_ENDPOINT": "http://hub.lan:8080"})
    with pytest.raises(RegistryError, match="insecure protocol http: HF_ENDPOINT http://hub.lan:8080 is plain HTTP"):
        Repository.of(NAME, insecure=False, endpoints=remote)
    assert Repository.of(NAME, insecure=True, endpoints=remote).base == "http://hub.lan:8080"


@pytest.mark.parametrize("bad", ["hub.example", "ftp://hub.example", "https://hub.example/?x=1"])
def test_a_bad_hf_endpoint_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="HF_ENDPOINT"):
        Endpoints.from_env({"HF_ENDPOINT": bad})
