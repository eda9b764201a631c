"""The UI's pure parts: parsing, formatting, error words, pull progress, pending pulls, settings file, autostart, Modelfile."""

from __future__ import annotations

import datetime as dt
import json
import plistlib
from pathlib import Path

import pytest

from ui.address import parse_address
from ui.api_types import Devices, LocalModel, ShowInfo, parse_ps, parse_time
from ui.autostart import LaunchAgent, RunKey, XdgAutostart, for_this_system
from ui.errors import ApiError, friendly
from ui.format import gpu_share, human_duration, human_eta, human_size, relative_time
from ui.modelfile import ModelfileError, plan
from ui.pull_manager import is_loopback_registry
from ui.pull_progress import PullTracker
from ui.pull_state import PendingPulls
from ui.settings_store import SettingsStore


def test_parse_time_takes_go_nanoseconds_and_offsets() -> None:
    t = parse_time("2026-08-01T12:00:00.123456789Z")
    assert t == dt.datetime(2026, 8, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    assert parse_time("2026-08-01T14:00:00+02:00") == dt.datetime(2026, 8, 1, 12, tzinfo=dt.UTC)
    assert parse_time("garbage") is None and parse_time(None) is None


def test_api_shapes_with_missing_fields() -> None:
    m = LocalModel.from_json(
        {"name": "a:latest", "digest": "0123456789abcdef" * 4, "size": 5, "details": {"families": None}}
    )
    assert m.id == "0123456789ab" and m.details.families == ()
    ps = parse_ps(
        {
            "models": [
                {"name": "a", "size": 10, "size_vram": 4, "context_length": 2048, "expires_at": "2026-01-01T00:00:00Z"}
            ]
        }
    )
    assert ps[0].on_gpu_fraction == 0.4 and ps[0].context_length == 2048
    d = Devices.from_json(
        {
            "devices": [{"id": "0", "name": "H100", "kind": "cuda", "total_memory": 80, "free_memory": 60}],
            "system_memory": {"total": 10, "free": 3},
        }
    )
    assert d.vram_total == 80 and d.gpus[0].used_memory == 20 and d.system_free == 3
    info = ShowInfo.from_json(
        {"model_info": {"b": [1] * 20, "a": 1}, "license": ["MIT", "Apache"], "capabilities": ["completion"]}
    )
    assert info.model_info[0] == ("a", "1") and info.model_info[1][1].endswith("…]")
    assert info.license == "MIT\nApache"


def test_formatting() -> None:
    assert human_size(999) == "999 B"
    assert human_size(2_000_000_000) == "2.0 GB"
    assert human_size(844_288) == "844 KB"
    assert human_duration(299.6) == "5:00" and human_duration(3723) == "1:02:03" and human_duration(None) == "forever"
    assert human_eta(30) == "30 s left" and human_eta(61) == "2 min left" and human_eta(None) == ""
    now = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    assert relative_time(now - dt.timedelta(days=3), now) == "3 days ago"
    assert relative_time(now - dt.timedelta(hours=1), now) == "An hour ago"
    assert (
        gpu_share(100, 0) == "100% CPU"
        and gpu_share(100, 100) == "100% GPU"
        and gpu_share(100, 48) == "52%/48% CPU/GPU"
    )


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (ApiError(0, "", "Connection refused"), "Cannot reach the pollama server"),
        (ApiError(0, "", "cancelled"), "Cancelled"),
        (ApiError(500, "pull model manifest: file does not exist"), "no model with that name"),  # Ollama's status
        (ApiError(404, "pull model manifest: file does not exist"), "no model with that name"),
        (ApiError(400, "invalid model name"), "not a valid model name"),
        (ApiError(500, "digest mismatch, file must be downloaded again"), "Retry"),
        (ApiError(404, "404 page not found"), "does not offer this yet"),
        (ApiError(404, "model 'x' not found"), "does not exist"),
        (ApiError(500, "boom"), "ran into a problem: boom"),
        (ApiError(400, "something odd"), "Something odd."),
    ],
)
def test_errors_in_words(error: ApiError, words: str) -> None:
    assert words in friendly(error)


def test_pull_tracker_speed_and_eta() -> None:
    now = [0.0]
    t = PullTracker(clock=lambda: now[0])
    t.feed({"status": "pulling manifest"})
    t.feed({"status": "pulling aaaaaaaaaaaa", "digest": "sha256:" + "a" * 64, "total": 1000, "completed": 0})
    t.feed({"status": "pulling bbbbbbbbbbbb", "digest": "sha256:" + "b" * 64, "total": 100, "completed": 100})
    now[0] = 1.0
    t.feed({"status": "pulling aaaaaaaaaaaa", "digest": "sha256:" + "a" * 64, "total": 1000, "completed": 250})
    layer = t.layers["sha256:" + "a" * 64]
    assert layer.short == "aaaaaaaaaaaa" and layer.rate == 250 and layer.eta == 3.0
    assert t.layers["sha256:" + "b" * 64].done and t.layers["sha256:" + "b" * 64].eta is None
    assert t.total == 1100 and t.completed == 350 and t.rate == 250 and t.eta == 3.0
    t.feed({"status": "success"})
    assert t.succeeded and t.fraction == 1.0
    t.feed({"error": "nope"})
    assert t.error == "nope"


def test_pending_pulls_survive_and_tolerate_damage(tmp_path: Path) -> None:
    path = tmp_path / "state" / "pulls.json"
    pulls = PendingPulls(path)
    assert pulls.items() == []
    pulls.add("llama3.2")
    pulls.add("127.0.0.1:5000/library/x", insecure=True)
    pulls.add("llama3.2")  # once
    again = PendingPulls(path)
    assert [(p.model, p.insecure) for p in again.items()] == [("127.0.0.1:5000/library/x", True), ("llama3.2", False)]
    again.remove("llama3.2")
    assert [p.model for p in pulls.items()] == ["127.0.0.1:5000/library/x"]
    path.write_text("{not json")
    assert pulls.items() == []


def test_loopback_registry_names() -> None:
    assert is_loopback_registry("127.0.0.1:5000/library/tiny:latest")
    assert is_loopback_registry("localhost:5000/x/y")
    assert not is_loopback_registry("llama3.2")
    assert not is_loopback_registry("user/model")
    assert not is_loopback_registry("hf.co/user/repo")


def test_settings_store_file_and_environment(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "c" / "config.json", environ={"OLLAMA_MODELS": " '/x' ", "OLLAMA_ORIGINS": "  "})
    assert store.load() == {}
    assert store.save({"OLLAMA_KEEP_ALIVE": "10m", "OLLAMA_HOST": None}) == {"OLLAMA_KEEP_ALIVE": "10m"}
    assert json.loads(store.path.read_text()) == {"OLLAMA_KEEP_ALIVE": "10m"}
    assert store.save({"OLLAMA_KEEP_ALIVE": "10m"}) == {}
    assert store.env_fixed() == {"OLLAMA_MODELS": " '/x' "}  # blank values do not count as set, as in the server
    assert store.effective()["OLLAMA_MODELS"] == " '/x' "
    assert store.save({"OLLAMA_KEEP_ALIVE": ""}) == {"OLLAMA_KEEP_ALIVE": ""}
    assert store.load() == {}


def test_addresses() -> None:
    assert parse_address(None).client_url == "http://127.0.0.1:11434"
    a = parse_address("0.0.0.0:8080")
    assert a.exposed and a.client_url == "http://127.0.0.1:8080"
    assert a.setting(exposed=False) == "127.0.0.1:8080" and a.setting(exposed=True) == "0.0.0.0:8080"
    assert parse_address("127.0.0.1").setting(exposed=False) is None
    assert parse_address("http://example.com").port == 80
    assert parse_address("[::1]:5000").host == "::1" and not parse_address("[::1]:5000").exposed


def test_autostart_linux_mac_windows(tmp_path: Path) -> None:
    xdg = XdgAutostart(["/opt/pollama/pollama", "app", "--hidden"], tmp_path / "xdg")
    assert not xdg.is_enabled()
    xdg.set_enabled(True)
    assert xdg.is_enabled() and "Exec=/opt/pollama/pollama app --hidden" in xdg.path.read_text()
    xdg.set_enabled(False)
    assert not xdg.is_enabled() and not xdg.path.exists()

    mac = LaunchAgent(
        ["/Applications/pollama.app/Contents/MacOS/pollama", "app", "--hidden"], tmp_path / "LaunchAgents"
    )
    mac.set_enabled(True)
    data = plistlib.loads(mac.path.read_bytes())
    assert data["RunAtLoad"] is True and data["ProgramArguments"][1:] == ["app", "--hidden"]
    assert mac.is_enabled()
    mac.set_enabled(False)
    assert not mac.is_enabled()

    class FakeWinreg:
        HKEY_CURRENT_USER = "HKCU"
        REG_SZ = 1
        values: dict[str, str] = {}

        class _Key:
            def __enter__(self):
                return self

            def __exit__(self, *a):
                return False

        def OpenKey(self, root, path):  # noqa: N802
            return self._Key()

        CreateKey = OpenKey

        def QueryValueEx(self, key, name):  # noqa: N802
            if name not in self.values:
                raise FileNotFoundError(name)
            return self.values[name], self.REG_SZ

        def SetValueEx(self, key, name, reserved, kind, value):  # noqa: N802
            self.values[name] = value

        def DeleteValue(self, key, name):  # noqa: N802
            if name not in self.values:
                raise FileNotFoundError(name)
            del self.values[name]

    reg = FakeWinreg()
    win = RunKey([r"C:\Program Files\pollama\pollama.exe", "app", "--hidden"], registry=reg)
    assert not win.is_enabled()
    win.set_enabled(True)
    assert reg.values["pollama"] == '"C:\\Program Files\\pollama\\pollama.exe" app --hidden'
    assert win.is_enabled()
    win.set_enabled(False)
    win.set_enabled(False)
    assert not win.is_enabled()
    assert isinstance(for_this_system("linux"), XdgAutostart)
    assert isinstance(for_this_system("darwin"), LaunchAgent)


def test_modelfile_to_create_request(tmp_path: Path) -> None:
    p = plan(
        'FROM llama3.2\nPARAMETER temperature 0.7\nPARAMETER stop "<|im_end|>"\nPARAMETER stop "###"\n'
        'SYSTEM """\nYou are\nterse.\n"""\nTEMPLATE {{ .Prompt }}\nLICENSE MIT\nMESSAGE user "hi there"\n# comment\n'
    )
    assert p.model_file is None
    assert p.body == {
        "from": "llama3.2",
        "system": "You are\nterse.\n",
        "template": "{{ .Prompt }}",
        "parameters": {"temperature": 0.7, "stop": ["<|im_end|>", "###"]},
        "license": ["MIT"],
        "messages": [{"role": "user", "content": "hi there"}],
    }
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    p = plan("FROM ./m.gguf\n", tmp_path)
    assert p.model_file == gguf.resolve() and "from" not in p.body
    with pytest.raises(ModelfileError, match="FROM"):
        plan("SYSTEM hi\n")
    with pytest.raises(ModelfileError, match="no such file"):
        plan("FROM ./missing.gguf\n", tmp_path)
    with pytest.raises(ModelfileError, match="unknown instruction"):
        plan("FORM x\n")
