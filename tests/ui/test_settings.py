"""Settings round-trip through the server's config file; the environment wins and the window says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.config import load_config, load_settings_file
from ui import settings_store as keys
from ui.autostart import XdgAutostart
from ui.settings_store import SettingsStore
from ui.settings_window import SettingsWindow


class FakeAutostart:
    def __init__(self) -> None:
        self.enabled = False

    def is_enabled(self) -> bool:
        return self.enabled

    def set_enabled(self, enabled: bool) -> None:
        self.enabled = enabled


@pytest.fixture
def store(tmp_path: Path) -> SettingsStore:
    return SettingsStore(tmp_path / "pollama" / "config.json", environ={})


def test_defaults_write_nothing_and_round_trip(qtbot, store: SettingsStore, tmp_path: Path) -> None:
    window = SettingsWindow(store, FakeAutostart())
    qtbot.addWidget(window)
    assert window.save() == []
    assert json.loads(store.path.read_text()) == {}
    assert not window.expose_warning.isVisibleTo(window)

    window.models_edit.setText(str(tmp_path / "models"))
    window.expose_check.setChecked(True)
    assert window.expose_warning.isVisibleTo(window) and "network" in window.expose_warning.text()
    window.generate_key_button.click()  # exposed: the keys row is offered
    key = window.keys_edit.text()
    window.origins_edit.setText("https://a.example, chrome-extension://*")
    window.keep_alive_edit.setText("1h30m")
    window.parallel_spin.setValue(4)
    window.max_loaded_spin.setValue(2)
    window.context_spin.setValue(8192)
    window.workers_edit.setText("10.0.0.9:50052")
    window.login_check.setChecked(True)
    with qtbot.waitSignal(window.saved) as saved:
        window.save()
    assert set(saved.args[0]) == set(keys.WINDOW_KEYS)

    # the server reads the same file with the same meaning
    file_values = load_settings_file(store.path)
    config = load_config(environ={}, settings=file_values)
    assert config.models == tmp_path / "models"
    assert config.host.host == "0.0.0.0" and config.host.port == 11434
    assert config.origins == ("https://a.example", "chrome-extension://*")
    assert config.keep_alive == 5400
    assert (config.num_parallel, config.max_loaded_models, config.context_length) == (4, 2, 8192)
    assert config.api_keys == (key,) and key.startswith("pk-") and len(key) > 30
    assert config.rpc_workers == ("10.0.0.9:50052",)

    again = SettingsWindow(store, window.autostart)
    qtbot.addWidget(again)
    assert again.values() == window.values()
    assert again.login_check.isChecked()

    # back to defaults removes the keys
    again.expose_check.setChecked(False)
    again.parallel_spin.setValue(0)
    assert sorted(again.save() or []) == [keys.HOST, keys.NUM_PARALLEL]
    assert keys.HOST not in store.load() and keys.NUM_PARALLEL not in store.load()


def test_unknown_keys_in_the_file_are_kept(qtbot, store: SettingsStore) -> None:
    store.path.parent.mkdir(parents=True)
    store.path.write_text(json.dumps({"OLLAMA_DEBUG": "1", "OLLAMA_KEEP_ALIVE": "5m"}))
    window = SettingsWindow(store, FakeAutostart())
    qtbot.addWidget(window)
    assert window.keep_alive_edit.text() == "5m"
    window.keep_alive_edit.setText("10m")
    assert window.save() == [keys.KEEP_ALIVE]
    assert store.load() == {"OLLAMA_DEBUG": "1", "OLLAMA_KEEP_ALIVE": "10m"}


def test_invalid_duration_is_refused_in_words(qtbot, store: SettingsStore) -> None:
    window = SettingsWindow(store, FakeAutostart())
    qtbot.addWidget(window)
    window.keep_alive_edit.setText("five minutes")
    assert window.save() is None
    assert window.status.kind == "error" and "not a duration" in window.status.text()
    assert not store.path.exists()


def test_environment_values_win_and_are_shown(qtbot, tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "config.json", environ={"OLLAMA_KEEP_ALIVE": "2h", "OLLAMA_MODELS": "/srv/models"})
    store.save({keys.KEEP_ALIVE: "5m", keys.NUM_PARALLEL: "2"})
    window = SettingsWindow(store, FakeAutostart())
    qtbot.addWidget(window)
    assert window.keep_alive_edit.text() == "2h" and not window.keep_alive_edit.isEnabled()
    assert not window.models_edit.isEnabled() and not window.browse_button.isEnabled()
    label = window.env_labels[keys.KEEP_ALIVE]
    assert label.isVisibleTo(window) and "OLLAMA_KEEP_ALIVE=2h" in label.text()
    assert window.parallel_spin.isEnabled() and window.parallel_spin.value() == 2
    window.parallel_spin.setValue(3)
    assert window.save() == [keys.NUM_PARALLEL]
    assert store.load() == {keys.KEEP_ALIVE: "5m", keys.NUM_PARALLEL: "3"}  # the file keeps its own value


def test_launch_at_login_writes_the_xdg_entry(qtbot, store: SettingsStore, tmp_path: Path) -> None:
    autostart = XdgAutostart(["/usr/bin/pollama", "app", "--hidden"], tmp_path / "xdg")
    window = SettingsWindow(store, autostart)
    qtbot.addWidget(window)
    assert not window.login_check.isChecked()  # off by default
    window.login_check.setChecked(True)
    window.save()
    text = (tmp_path / "xdg" / "autostart" / "pollama.desktop").read_text()
    assert "Exec=/usr/bin/pollama app --hidden" in text
    window.login_check.setChecked(False)
    window.save()
    assert not autostart.path.exists()


def test_saving_restarts_only_an_embedded_server(qtbot, desktop) -> None:
    class Server:
        url = desktop.client.base_url
        api_key = None
        restarts = 0

        def restart(self, on_ready) -> None:
            Server.restarts += 1
            on_ready(None)

        def stop(self) -> None:
            pass

    desktop.server = Server()
    window = desktop.show_settings()
    qtbot.addWidget(window)
    window.login_check.setChecked(True)
    window.save()  # launch at login alone needs no restart
    assert Server.restarts == 0
    window.context_spin.setValue(4096)
    with qtbot.waitSignal(desktop.server_restarted, timeout=10_000) as got:
        window.save()
    assert got.args[0] == "" and Server.restarts == 1
    qtbot.waitUntil(lambda: desktop.monitor.reachable is True, timeout=10_000)


def test_api_keys_are_offered_once_the_server_is_exposed(qtbot, store: SettingsStore, tmp_path: Path) -> None:
    window = SettingsWindow(store, FakeAutostart())
    qtbot.addWidget(window)
    assert not window.keys_edit.isVisibleTo(window) and not window.keys_hint.isVisibleTo(window)
    window.expose_check.setChecked(True)
    assert window.keys_edit.isVisibleTo(window) and "TLS proxy" in window.keys_hint.text()
    window.keys_edit.setText("pk-one, two words")
    assert window.save() is None and "API key 2" in window.status.text()
    assert "two words" not in window.status.text()
    window.keys_edit.setText(" pk-one , pk-two ")
    window.save()
    assert load_config(environ={}, settings=load_settings_file(store.path)).api_keys == ("pk-one", "pk-two")
    window.generate_key_button.click()
    assert window.keys_edit.text().startswith("pk-one,pk-two,pk-")

    # a key file is the server's to read; a missing one is the server's start-up error, not the window's
    keyfile = tmp_path / "keys.txt"
    keyfile.write_text("pk-from-file\n", encoding="utf-8")
    window.keys_edit.setText(str(keyfile))
    window.save()
    assert load_config(environ={}, settings=load_settings_file(store.path)).api_keys == ("pk-from-file",)

    # back on loopback, a key that is set stays in view, so that it can be removed
    window.expose_check.setChecked(False)
    assert window.keys_edit.isVisibleTo(window)
    window.keys_edit.setText("")
    window.save()
    assert keys.API_KEYS not in json.loads(store.path.read_text())
    reopened = SettingsWindow(store, FakeAutostart())
    qtbot.addWidget(reopened)
    assert not reopened.keys_edit.isVisibleTo(reopened)


def test_keys_from_the_environment_are_shown_fixed(qtbot, tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "config.json", environ={keys.API_KEYS: "pk-env"})
    window = SettingsWindow(store, FakeAutostart())
    qtbot.addWidget(window)
    assert window.keys_edit.isVisibleTo(window) and not window.keys_edit.isEnabled()
    label = window.env_labels[keys.API_KEYS].text().replace("\u200b", "")
    assert "POLLAMA_API_KEYS" in label and "pk-env" not in label  # a key is never shown


def test_rpc_workers_are_saved_for_the_server_and_bad_ones_refused(qtbot, store: SettingsStore) -> None:
    window = SettingsWindow(store, FakeAutostart())
    qtbot.addWidget(window)
    window.load()
    window.workers_edit.setText("box:0")
    assert window.save() is None
    assert window.status.kind == "error" and "“box:0” is not a worker address" in window.status.text()
    assert not store.path.exists()
    window.workers_edit.setText(" 10.0.0.2:50052 , gpu-box ,, [fd00::2]:7000")
    assert window.save() == [keys.RPC_WORKERS]
    # The server reads the same file and agrees with what the window let through.
    config = load_config({}, settings=load_settings_file(store.path))
    assert config.rpc_workers == ("10.0.0.2:50052", "gpu-box:50052", "[fd00::2]:7000")
    reopened = SettingsWindow(store, FakeAutostart())
    qtbot.addWidget(reopened)
    reopened.load()
    assert reopened.workers_edit.text() == "10.0.0.2:50052,gpu-box,[fd00::2]:7000"
