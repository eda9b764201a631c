"""Start the desktop app under Xvfb with a few tiny models and save screenshots for the README.

    python packaging/screenshots.py            # re-runs itself under xvfb-run when there is no display
    python packaging/screenshots.py --out docs/screenshots

Everything happens in a throwaway home (models, settings, state), with the
app's real start-up path (`app.desktop.launch`): embedded server, tray menu,
windows. Models are the random-weight test GGUFs from `tests/fixtures`; a
pull in progress comes from a loopback registry behind a throttling proxy
when `docker-registry` is installed, and a pull that fails (no network here)
shows how errors read. Needs: xvfb (see .ci/apt-packages-desktop.txt).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHOTS = ("tray-menu", "library", "running-models", "pull-manager", "settings")


def ensure_display(argv: list[str]) -> None:
    """No X display: run this script again inside xvfb-run (an X server in memory)."""
    if os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") or os.environ.get("POLLAMA_SHOTS_CHILD"):
        return
    xvfb = shutil.which("xvfb-run")
    if xvfb is None:
        sys.exit("No display and no xvfb-run: install xvfb (apt-get install xvfb) or set DISPLAY.")
    env = {**os.environ, "POLLAMA_SHOTS_CHILD": "1"}
    cmd = [xvfb, "-a", "-s", "-screen 0 1600x1000x24", sys.executable, __file__, *argv]
    sys.exit(subprocess.run(cmd, env=env).returncode)


def isolate(home: Path, port: int) -> None:
    os.environ["HOME"] = str(home)
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_CACHE_HOME", ".cache"),
    ):
        os.environ[var] = str(home / sub)
    for key in [k for k in os.environ if k.startswith("OLLAMA_")]:
        del os.environ[key]
    # The models folder comes from the environment (the settings window shows such values as fixed);
    # the rest from the settings file, as the settings window writes it.
    os.environ["OLLAMA_MODELS"] = str(home / ".ollama" / "models")
    config = home / ".config" / "pollama" / "config.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        json.dumps({"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_KEEP_ALIVE": "30m", "OLLAMA_NUM_PARALLEL": "2"})
    )
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")


def add_models(url: str) -> None:
    import httpx

    from tests.fixtures.gguf_models import cached_model

    chatml = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    with httpx.Client(base_url=url, timeout=120, trust_env=False) as c:
        for name, kind, extra in (
            ("tinyllama-demo:latest", "tiny", {"template": chatml, "system": "You are a helpful assistant."}),
            ("small-chat:f16", "small", {"template": chatml, "parameters": {"temperature": 0.7, "num_ctx": 2048}}),
            ("minibert:embed", "bert", {}),
        ):
            path = cached_model("tiny", kind="bert") if kind == "bert" else cached_model(kind)
            data = path.read_bytes()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            c.post(f"/api/blobs/{digest}", content=data)
            r = c.post("/api/create", json={"model": name, "files": {"model.gguf": digest}, "stream": False, **extra})
            r.raise_for_status()
        r = c.post(
            "/api/generate",
            json={"model": "small-chat:f16", "prompt": "Hello", "stream": False, "options": {"num_predict": 4}},
        )
        r.raise_for_status()


def start_registry(work: Path) -> tuple[str, list[object]] | None:
    """A loopback registry holding `library/small-demo`, behind a proxy that throttles to ~1 MB/s."""
    sys.path.insert(0, str(REPO))
    from tests.support.registry import FaultProxy, Faults, RegistryServer, registry_available, upload_model

    if not registry_available():
        return None
    import httpx

    from tests.fixtures.gguf_models import cached_model

    registry = RegistryServer(work / "registry").start()
    with httpx.Client(trust_env=False, timeout=60) as c:
        upload_model(
            c,
            registry.url,
            "library/small-demo",
            "latest",
            [("application/vnd.ollama.image.model", cached_model("small", predictable=False))],
            b'{"model_format":"gguf","model_family":"llama"}',
        )
    proxy = FaultProxy(("127.0.0.1", registry.port), Faults(rate=1_000_000)).start()
    return f"{proxy.host}/library/small-demo:latest", [proxy, registry]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args(argv)
    ensure_display(argv)
    sys.path.insert(0, str(REPO))
    from tests.support.live_server import free_port

    work = Path(tempfile.mkdtemp(prefix="pollama-shots-"))
    port = free_port()
    isolate(work / "home", port)
    args.out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtCore import QEventLoop, QPoint, QTimer
    from PySide6.QtGui import QGuiApplication

    from app.desktop import launch

    def wait(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    launched = launch(["--hidden"])
    if isinstance(launched, int):
        return launched
    desktop = launched.desktop
    stoppers: list[object] = []
    try:
        add_models(desktop.client.base_url)
        registry = start_registry(work)

        def save(name: str, widget: object) -> None:
            pixmap = widget.grab()  # type: ignore[attr-defined]
            path = args.out / f"{name}.png"
            pixmap.save(str(path))
            print(
                f"saved {path.relative_to(REPO) if path.is_relative_to(REPO) else path} ({pixmap.width()}x{pixmap.height()})"
            )

        # library with a selected model's details
        library = desktop.show_library()
        library.resize(1200, 560)
        wait(1500)
        library.select("small-chat:f16")
        wait(1200)
        save("library", library)
        library.hide()

        # running models, devices, a fit estimate
        running = desktop.show_running()
        running.resize(1000, 520)
        wait(1500)
        running.model_combo.setCurrentText("small-chat:f16")
        running.estimate("small-chat:f16")
        wait(1500)
        save("running-models", running)
        running.hide()

        # tray menu, with the running-models submenu open
        desktop.monitor.refresh()
        wait(800)
        menu = desktop.tray.menu
        menu.popup(QPoint(40, 40))
        wait(300)
        sub_action = desktop.tray.running_menu.menuAction()
        menu.setActiveAction(sub_action)
        desktop.tray.running_menu.popup(menu.mapToGlobal(menu.actionGeometry(sub_action).topRight()))
        wait(500)
        screen = QGuiApplication.primaryScreen()
        sub = desktop.tray.running_menu
        right = max(menu.geometry().right(), sub.geometry().right()) + 8
        bottom = max(menu.geometry().bottom(), sub.geometry().bottom()) + 8
        shot = screen.grabWindow(0, 32, 32, right - 32, bottom - 32)
        shot.save(str(args.out / "tray-menu.png"))
        print(f"saved tray-menu.png ({shot.width()}x{shot.height()})")
        sub.hide()
        menu.hide()

        # pull manager: one in progress (if a registry is available) and one that failed
        pulls = desktop.show_pulls()
        pulls.resize(760, 560)
        desktop.pulls.start("llama3.2:1b")
        if registry is not None:
            name, stoppers = registry
            desktop.pulls.start(name)
        wait(5500)
        save("pull-manager", pulls)
        for model in list(desktop.pulls.jobs):
            desktop.pulls.cancel(model)
        pulls.hide()

        settings = desktop.show_settings()
        settings.origins_edit.setText("https://chat.example.com")
        settings.resize(760, 520)
        wait(500)
        save("settings", settings)
        settings.hide()
    finally:
        desktop.shutdown()
        launched.instance.release()
        for s in stoppers:
            s.stop()  # type: ignore[attr-defined]
        shutil.rmtree(work, ignore_errors=True)
    missing = [n for n in SHOTS if not (args.out / f"{n}.png").exists()]
    if missing:
        print("missing:", ", ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
