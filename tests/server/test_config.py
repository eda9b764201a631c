import json
import math
from pathlib import Path

import pytest

from server.config import ConfigError, HostAddress, load_config, load_settings_file, parse_bool, parse_host


def test_defaults_match_ollama() -> None:
    c = load_config({}, {})
    assert c.host == HostAddress("http", "127.0.0.1", 11434)
    assert c.keep_alive == 300
    assert c.load_timeout == 300
    assert c.num_parallel == 1
    assert c.max_loaded_models == 0
    assert c.max_queue == 512
    assert c.models == Path.home() / ".ollama" / "models"
    assert c.go_template is True
    assert c.remotes == ("ollama.com",)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("", HostAddress("http", "127.0.0.1", 11434)),
        ("0.0.0.0", HostAddress("http", "0.0.0.0", 11434)),
        ("0.0.0.0:8080", HostAddress("http", "0.0.0.0", 8080)),
        (":1234", HostAddress("http", "127.0.0.1", 1234)),
        ("http://example.com", HostAddress("http", "example.com", 80)),
        ("https://example.com", HostAddress("https", "example.com", 443)),
        ("https://example.com:99/path", HostAddress("https", "example.com", 99)),
        ("[::1]:5000", HostAddress("http", "::1", 5000)),
        ("  '127.0.0.1:9'  ", HostAddress("http", "127.0.0.1", 9)),
        ("ollama.com", HostAddress("https", "ollama.com", 443)),
    ],
)
def test_parse_host(value: str, expected: HostAddress) -> None:
    assert parse_host(value) == expected


def test_parse_host_rejects_bad_port() -> None:
    with pytest.raises(ConfigError, match="OLLAMA_HOST"):
        parse_host("127.0.0.1:99999")


def test_bools_follow_ollama() -> None:
    assert parse_bool("1") and parse_bool("true") and parse_bool("yes-please")
    assert not parse_bool("0") and not parse_bool("false") and not parse_bool("") and not parse_bool('"false"')


def test_values_are_trimmed_and_typed() -> None:
    c = load_config(
        {
            "OLLAMA_KEEP_ALIVE": ' "10m" ',
            "OLLAMA_NUM_PARALLEL": "4",
            "OLLAMA_LOAD_TIMEOUT": "0",
            "OLLAMA_ORIGINS": "http://a.test, chrome-extension://*",
            "OLLAMA_DEBUG": "2",
            "OLLAMA_KV_CACHE_TYPE": "Q8_0",
            "OLLAMA_NOPRUNE": "1",
        },
        {},
    )
    assert c.keep_alive == 600
    assert c.num_parallel == 4
    assert c.load_timeout == math.inf
    assert c.origins == ("http://a.test", "chrome-extension://*")
    assert c.debug == 2
    assert c.kv_cache_type == "q8_0"
    assert c.noprune is True
    assert "OLLAMA_NUM_PARALLEL" in c.from_env


@pytest.mark.parametrize(
    "var, value",
    [
        ("OLLAMA_NUM_PARALLEL", "four"),
        ("OLLAMA_NUM_PARALLEL", "0"),
        ("OLLAMA_MAX_QUEUE", "-3"),
        ("OLLAMA_KEEP_ALIVE", "5 minutes"),
        ("OLLAMA_KV_CACHE_TYPE", "q3"),
        ("OLLAMA_HOST", "localhost:notaport"),
    ],
)
def test_invalid_value_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        load_config({var: value}, {})


def test_env_beats_settings_file_beats_default(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"OLLAMA_KEEP_ALIVE": "1h", "OLLAMA_NUM_PARALLEL": "2", "unknown": 1}))
    settings = load_settings_file(path)
    c = load_config({"OLLAMA_NUM_PARALLEL": "3"}, settings)
    assert c.keep_alive == 3600 and c.num_parallel == 3
    assert c.from_env == frozenset({"OLLAMA_NUM_PARALLEL"})


def test_broken_settings_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings_file(path)
