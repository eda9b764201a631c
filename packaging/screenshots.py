"""Start the desktop app under Xvfb with a few tiny models and save a screenshot of every page, light and dark.

    python packaging/screenshots.py                 # both schemes; re-runs itself under xvfb-run without a display
    python packaging/screenshots.py --scheme dark --out docs/screenshots

Every page of the main window (`<page>-<scheme>.png`), the first-run screen
of an empty store (`firstrun-<scheme>.png`), the import of GGUFs found in a
Hugging Face cache (`import-<scheme>.png`) and the tray menu
(`tray-menu-<scheme>.png`). Each scheme runs in its own process (a palette is
set once, before any widget exists, as a system setting would be), in a
throwaway home (models, settings, chats, state), through the app's real
start-up path (`app.desktop.launch`): embedded server, tray menu, window.
Models are the random-weight test GGUFs from `tests/fixtures`, so the chat
shows a real exchange whose answer is noise; the Markdown in it is the
person's message. A pull in progress comes from a loopback registry behind a
throttling proxy when `docker-registry` is installed, and a pull that fails
(no network here) shows how errors read. Needs: xvfb (see
.ci/apt-packages-desktop.txt).
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
SCHEMES = ("light", "dark")
SHOT_SIZE = (1000, 660)
THINK_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}"
    "{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n{{ if .Think }}<think>{{ end }}"
)
DEMO_PROMPT = """Compare these two, as a table, then show the call:

| model | size | context |
|---|---|---|
| tinyllama-demo | 0.9 MB | 2,048 |
| small-chat:f16 | 10 MB | 4,096 |

```python
import ollama
ollama.chat(model="small-chat:f16", messages=[{"role": "user", "content": "hi"}])
```"""


def shot_names() -> list[str]:
    from ui.pages import PAGE_NAMES

    return [
        f"{name}-{scheme}"
        for scheme in SCHEMES
        for name in (*PAGE_NAMES, "developer-requests", "firstrun", "import", "tray-menu")
    ]


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
    for key in [k for k in os.environ if k.startswith(("OLLAMA_", "HF_HOME", "HF_HUB_CACHE"))]:
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
            (
                "small-chat:f16",
                "small",
                {"template": chatml, "parameters": {"temperature": 0.7, "num_ctx": 2048, "num_predict": 60}},
            ),
            ("minibert:embed", "bert", {}),
            ("thinker-demo:latest", "tiny", {"template": THINK_TEMPLATE, "parameters": {"num_predict": 24}}),
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


def fake_hf_cache(home: Path) -> None:
    """Two GGUF repositories in the throwaway home's Hugging Face cache, laid out as `huggingface_hub` writes them."""
    from tests.fixtures.gguf_models import cached_model

    hub = home / ".cache" / "huggingface" / "hub"
    for repo, file, path in (
        ("tester/TinyLlama-Demo-GGUF", "tinyllama-demo-Q8_0.gguf", cached_model("tiny")),
        ("tester/Small-Chat-GGUF", "small-chat-F16.gguf", cached_model("small")),
        ("tester/Small-Chat-GGUF", "mmproj-small-chat-f16.gguf", cached_model("tiny", kind="clip")),
    ):
        folder = hub / ("models--" + repo.replace("/", "--"))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (folder / "blobs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / "blobs" / digest)
        snapshot = folder / "snapshots" / "5f3c0a1e"
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / file).symlink_to(Path("..") / ".." / "blobs" / digest)


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


def run_schemes(argv: list[str], out: Path) -> int:
    """One child process per scheme (a palette is fixed before the first widget), then check every shot is there."""
    env = {**os.environ, "POLLAMA_SHOTS_CHILD": "1"}
    for scheme in SCHEMES:
        code = subprocess.run([sys.executable, __file__, *argv, "--scheme", scheme], env=env).returncode
        if code:
            return code
    sys.path.insert(0, str(REPO))
    missing = [n for n in shot_names() if not (out / f"{n}.png").exists()]
    if missing:
        print("missing:", ", ".join(missing), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--scheme", choices=(*SCHEMES, "both"), default="both")
    args = parser.parse_args(argv)
    ensure_display(argv)
    if args.scheme == "both":
        return run_schemes([a for a in argv if a not in ("--scheme", "both")], args.out)
    sys.path.insert(0, str(REPO))
    from tests.support.live_server import free_port

    work = Path(tempfile.mkdtemp(prefix="pollama-shots-"))
    port = free_port()
    isolate(work / "home", port)
    args.out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtCore import QEventLoop, QPoint, QTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from app.desktop import launch
    from ui.chat_api import ChatOptions, Think
    from ui.theme import Scheme, force_scheme

    app = QApplication(sys.argv[:1])
    force_scheme(Scheme(args.scheme), app)
    scheme = args.scheme

    def wait(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def wait_for(condition: object, ms: int = 60_000) -> None:
        for _ in range(ms // 50):
            if condition():  # type: ignore[operator]
                return
            wait(50)

    launched = launch(["--hidden"])
    if isinstance(launched, int):
        return launched
    desktop = launched.desktop
    window = desktop.window
    stoppers: list[object] = []
    try:
        window.resize(*SHOT_SIZE)

        def save(name: str, widget: object) -> None:
            pixmap = widget.grab()  # type: ignore[attr-defined]
            path = args.out / f"{name}-{scheme}.png"
            pixmap.save(str(path))
            shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            print(f"saved {shown} ({pixmap.width()}x{pixmap.height()})")

        # first run: the store is empty, so the chat's place says how to get a model
        home = desktop.chat_home()
        desktop.show_page("chat")
        wait_for(lambda: home.showing_first_run)
        wait(300)
        save("firstrun", window)
        fake_hf_cache(work / "home")
        home.first_run.import_button.click()
        dialog = desktop.import_dialog
        wait_for(lambda: bool(dialog.candidates) and not dialog.job.running)
        dialog.resize(980, 420)
        wait(500)
        save("import", dialog)
        dialog.close()

        add_models(desktop.client.base_url)
        registry = start_registry(work)

        # chat: a thinking model's folded thoughts in one chat, a Markdown-rich exchange in the one shown
        chat = desktop.show_chat()
        wait_for(lambda: chat.model_combo.count() >= 4)
        wait_for(lambda: not home.showing_first_run)
        chat.new_chat()
        chat.pick_model("thinker-demo:latest")
        wait_for(lambda: chat.facts is not None and chat.facts.name == "thinker-demo:latest")
        chat.session.update(options=ChatOptions(think=Think.ON))
        chat.composer.setPlainText("Why is the sky blue?")
        chat.send_typed()
        wait_for(lambda: not chat.session.busy)
        chat.new_chat()
        chat.pick_model("small-chat:f16")
        chat.session.update(options=ChatOptions(temperature=0.7, seed=42))
        chat.composer.setPlainText(DEMO_PROMPT)
        chat.send_typed()
        wait_for(lambda: not chat.session.busy)
        desktop.monitor.refresh()
        wait(800)
        chat.composer.setPlainText("Thanks! And in one sentence?")
        save("chat", window)

        # library with a selected model's details
        library = desktop.show_library()
        wait(1500)
        library.select("small-chat:f16")
        wait(1200)
        save("library", window)

        # running models, devices, a fit estimate
        running = desktop.show_running()
        wait(1500)
        running.model_combo.setCurrentText("small-chat:f16")
        running.estimate("small-chat:f16")
        wait(1500)
        save("running", window)

        # downloads: one in progress (if a registry is available) and one that failed
        desktop.show_pulls()
        desktop.pulls.start("llama3.2:1b")
        if registry is not None:
            name, stoppers = registry
            desktop.pulls.start(name)
        wait(5500)
        save("pulls", window)
        for model in list(desktop.pulls.jobs):
            desktop.pulls.cancel(model)

        desktop.show_page("discover")
        wait(300)
        save("discover", window)
        import httpx

        with httpx.Client(base_url=desktop.client.base_url, timeout=120, trust_env=False) as c:
            for body in (
                {"model": "tinyllama-demo:latest", "prompt": "Once upon a time", "options": {"num_predict": 12}},
                {"model": "small-chat:f16", "prompt": "Hello", "options": {"num_predict": 8}},
                {"model": "llama3.2:1b", "prompt": "Hello"},  # not pulled: a 404 in the list
            ):
                c.post("/api/generate", json={**body, "stream": False})
            c.post("/api/embed", json={"model": "minibert:embed", "input": ["a sentence to embed"]})
        developer = desktop.show_page("developer")
        wait(1500)  # a poll or two: the log tail and the requests so far
        save("developer", window)
        developer.tabs.setCurrentIndex(1)
        wait(300)
        save("developer-requests", window)
        developer.tabs.setCurrentIndex(0)

        settings = desktop.show_settings()
        settings.origins_edit.setText("https://chat.example.com")
        wait(500)
        save("settings", window)

        # tray menu, with the running-models submenu open
        window.hide()
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
        shot.save(str(args.out / f"tray-menu-{scheme}.png"))
        print(f"saved tray-menu-{scheme}.png ({shot.width()}x{shot.height()})")
        sub.hide()
        menu.hide()
    finally:
        desktop.shutdown()
        launched.instance.release()
        for s in stoppers:
            s.stop()  # type: ignore[attr-defined]
        shutil.rmtree(work, ignore_errors=True)
    # PySide6 can crash while the interpreter tears its objects down; everything is saved and stopped by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
