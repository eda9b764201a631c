"""Structured logs: `POLLAMA_LOG_FORMAT=json` (one JSON object per line) and
`OLLAMA_DEBUG_LOG_REQUESTS` (bodies and replay commands, as Ollama's
`server/inference_request_log.go` writes them), against a live server."""

from __future__ import annotations

import json
import logging
import re
import shutil
import stat
import subprocess
from pathlib import Path

import httpx
import ollama
import pytest

from server.api.request_logging import route_for_filename, shell_quote
from server.config import ConfigError, load_config
from server.logs import JsonLineFormatter
from tests.server.api.test_openai_api import CHATML, create
from tests.support.live_server import LiveServer

KEY = "pk-log-test-1234"


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_formatter_writes_one_object_with_extra_fields() -> None:
    record = logging.LogRecord("pollama.x", logging.WARNING, __file__, 1, "loaded %s", ("m",), None)
    record.route = "/api/chat"
    line = JsonLineFormatter().format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert list(obj)[:4] == ["time", "level", "logger", "message"]
    assert obj["level"] == "WARNING" and obj["logger"] == "pollama.x" and obj["message"] == "loaded m"
    assert obj["route"] == "/api/chat"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(obj["time"]))


def test_log_format_setting_is_checked() -> None:
    assert load_config({}, {}).log_format == "text"
    assert load_config({"POLLAMA_LOG_FORMAT": "JSON"}, {}).log_format == "json"
    with pytest.raises(ConfigError, match="POLLAMA_LOG_FORMAT: 'xml' is not one of text, json"):
        load_config({"POLLAMA_LOG_FORMAT": "xml"}, {})


def test_serve_logs_json_lines(models_dir: Path) -> None:
    srv = LiveServer(models_dir, env={"POLLAMA_LOG_FORMAT": "json"}).start()
    try:
        httpx.get(srv.url + "/api/tags")
        httpx.post(srv.url + "/api/show", json={"model": "missing"})
    finally:
        srv.stop()
    lines = json_lines(srv.log_path.read_text())  # every line parses: nothing else is written
    assert any(line["message"] == f"Listening on {srv.host} (version {_version()})" for line in lines)
    access = [line for line in lines if line["logger"] == "pollama.request"]
    assert {"method": "POST", "path": "/api/show", "status": 404, "remote": "127.0.0.1"}.items() <= access[-1].items()
    assert isinstance(access[-1]["duration_ms"], float)


def _version() -> str:
    from server import __version__

    return __version__


def test_debug_log_requests_keeps_bodies_and_replays_them(models_dir: Path, tiny_model_path: Path) -> None:
    srv = LiveServer(
        models_dir, env={"OLLAMA_DEBUG_LOG_REQUESTS": "1", "POLLAMA_API_KEYS": KEY, "OLLAMA_KEEP_ALIVE": "5m"}
    ).start()
    folder: Path | None = None
    try:
        client = ollama.Client(host=srv.url, headers={"Authorization": f"Bearer {KEY}"})
        create(client, "tiny", tiny_model_path, template=CHATML)
        body = {"model": "tiny", "prompt": "héllo", "stream": False, "options": {"num_predict": 2, "temperature": 0}}
        raw = json.dumps(body, ensure_ascii=False).encode()
        first = httpx.post(
            srv.url + "/api/generate",
            content=raw,
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
            timeout=120,  # the first generation loads the runner
        )
        assert first.status_code == 200
        httpx.get(srv.url + "/api/tags", headers={"Authorization": f"Bearer {KEY}"})  # not an inference route
        httpx.post(srv.url + "/api/generate", content=raw)  # refused (401): nothing is kept
        log = srv.log_path.read_text()
        found = re.search(r"inference request logs will be stored in (\S+) ", log)
        assert found, log
        folder = Path(found.group(1))
        bodies = sorted(folder.glob("*_api_generate_body.json"))
        scripts = sorted(folder.glob("*_api_generate_request.sh"))
        assert len(bodies) == 1 and len(scripts) == 1 and len(list(folder.iterdir())) == 2
        assert bodies[0].read_bytes() == raw  # exactly as sent
        assert stat.S_IMODE(bodies[0].stat().st_mode) == 0o600
        assert f"logged to {bodies[0]}, replay using curl with `sh {scripts[0]}`" in log
        script = scripts[0].read_text()
        assert KEY not in script and KEY not in log
        assert "POLLAMA_API_KEY" in script

        if shutil.which("curl"):
            replay = subprocess.run(
                ["sh", str(scripts[0])],
                env={"PATH": "/usr/bin:/bin", "POLLAMA_API_KEY": KEY},
                capture_output=True,
                timeout=120,
            )
            assert replay.returncode == 0, replay.stderr
            assert json.loads(replay.stdout)["done"] is True
            unset = subprocess.run(["sh", str(scripts[0])], env={"PATH": "/usr/bin:/bin"}, capture_output=True)
            assert unset.returncode != 0 and b"set POLLAMA_API_KEY to replay" in unset.stderr
    finally:
        srv.stop()
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def test_replay_scripts_quote_what_the_client_chose() -> None:
    assert shell_quote("it's `x` $(y)") == "'it'\\''s `x` $(y)'"
    assert route_for_filename("/v1/chat/completions") == "v1_chat_completions"
    assert route_for_filename("/") == "root"
