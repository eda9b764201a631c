"""First run: an empty store offers three ways to a model, and "Import from disk" imports the GGUFs other tools downloaded.

Against a live server with an empty store, with a fake Hugging Face cache laid
out as `huggingface_hub` writes it (snapshot symlinks into `blobs/`), holding
tiny GGUFs from tests/fixtures; the imported models are listed and generate.
The hard-link import is checked on the store's own file system (the blob *is*
the file: same inode) and on another one (a tmpfs: it falls back to a copy).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from pathlib import Path

import httpx
import ollama
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from app.store_link import StoreLinkImporter
from tests.support.live_server import LiveServer
from tests.support.tmpfs import MiB, mounted_tmpfs
from tests.ui.conftest import make_desktop
from ui.gguf_import import Cancelled, HttpBlobImporter, ImportItem, import_files

TIMEOUT = 60_000


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hf_repo(cache: Path, repo: str, files: dict[str, Path], revision: str = "0123abcd") -> Path:
    """A repository in a Hugging Face hub cache: `blobs/<sha>` and `snapshots/<rev>/<name>` → `../../blobs/<sha>`."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    for name, source in files.items():
        digest = sha256(source)
        blob = folder / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(source, blob)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / digest)
    return folder


@pytest.fixture
def empty_server(models_dir: Path) -> LiveServer:
    srv = LiveServer(models_dir).start()
    yield srv
    srv.stop()


@pytest.fixture
def hf_cache(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_model_path: Path,
    tiny_model_eos_path: Path,
    tiny_projector_path: Path,
) -> Path:
    cache = tmp_path / "hf" / "hub"
    hf_repo(
        cache,
        "tester/Tiny-Chat-GGUF",
        {"tiny-chat-Q8_0.gguf": tiny_model_path, "mmproj-tiny-chat-f16.gguf": tiny_projector_path},
    )
    hf_repo(cache, "someone/Mini-Stories-GGUF", {"mini-stories.gguf": tiny_model_eos_path})
    broken = cache / "models--someone--Broken-GGUF" / "snapshots" / "ffff"
    broken.mkdir(parents=True)
    (broken / "broken.gguf").write_bytes(b"not a model at all\n" * 10)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HOME", raising=False)
    return cache


def rows(dialog) -> dict[str, tuple[str, bool, str]]:
    """file name → (model name, ticked, note)."""
    return {
        c.found.path.name: (dialog.names()[r], r in dialog.checked_rows(), dialog.note(r))
        for r, c in enumerate(dialog.candidates)
    }


def test_first_run_imports_both_ggufs_of_a_hugging_face_cache(
    qtbot, empty_server, hf_cache, prompter, tmp_path
) -> None:
    desktop = make_desktop(empty_server.url, prompter, tmp_path)
    desktop.start()
    try:
        home = desktop.chat_home()
        desktop.show_page("chat")
        qtbot.waitUntil(lambda: home.showing_first_run, timeout=TIMEOUT)  # an empty store: the three ways
        first_run = home.first_run
        assert [w.findChild(type(first_run.import_button)).text() for w in first_run.ways] == [
            "Discover models",
            "Choose a file…",
            "Import from disk…",
        ]
        first_run.import_button.click()
        dialog = desktop.import_dialog
        assert dialog is not None
        qtbot.waitUntil(lambda: bool(dialog.candidates) and not dialog.job.running, timeout=TIMEOUT)
        assert "Hugging Face cache" in dialog.heading.text() and str(hf_cache) in dialog.heading.toolTip()
        found = rows(dialog)
        assert found["tiny-chat-Q8_0.gguf"][:2] == ("tiny-chat:q8_0", True)
        assert found["mini-stories.gguf"][:2] == ("mini-stories:f32", True)  # no quant in the name: the header's
        assert found["mmproj-tiny-chat-f16.gguf"][1] is False
        assert "vision projector" in found["mmproj-tiny-chat-f16.gguf"][2]
        assert found["broken.gguf"][1:] == (False, "Skipped: it is not a GGUF file")
        # the snapshot links were followed to the blobs, and the header was read
        tiny_row = next(c for c in dialog.candidates if c.found.path.name == "tiny-chat-Q8_0.gguf")
        assert tiny_row.found.real_path.parent.name == "blobs" and tiny_row.found.repo == "tester/Tiny-Chat-GGUF"
        assert tiny_row.found.summary.architecture == "llama" and tiny_row.how == "copy"
        size = tiny_row.found.size + next(
            c.found.size for c in dialog.candidates if c.found.path.name == "mini-stories.gguf"
        )
        assert "2 files" in dialog.summary.text() and "a copy of each file goes into the store" in dialog.summary.text()
        assert dialog.import_button.text() == "Import 2"

        assert dialog.import_button.isEnabled()
        with qtbot.waitSignal(dialog.imported, timeout=TIMEOUT) as done:
            dialog.import_button.click()
        results = done.args[0]
        assert sorted((r.item.name, r.ok, r.imported.how) for r in results) == [
            ("mini-stories:f32", True, "copied"),
            ("tiny-chat:q8_0", True, "copied"),
        ]
        assert sum(r.imported.extra_bytes for r in results) == size
        assert dialog.status.kind == "ok" and "Imported mini-stories:f32, tiny-chat:q8_0." in dialog.status.text()
        assert rows(dialog)["tiny-chat-Q8_0.gguf"][2] == "Imported (copied)"
        listed = {m["name"] for m in httpx.get(empty_server.url + "/api/tags").json()["models"]}
        assert listed == {"tiny-chat:q8_0", "mini-stories:f32"}
        client = ollama.Client(host=empty_server.url)
        for name in listed:
            answer = client.generate(model=name, prompt="Once", options={"num_predict": 3, "temperature": 0})
            assert answer.done and answer.eval_count >= 1
        # a model is there now: the chat takes the first-run screen's place, and lists them
        qtbot.waitUntil(lambda: not home.showing_first_run, timeout=TIMEOUT)
        chat = desktop.chat()
        qtbot.waitUntil(lambda: chat.model_combo.count() == 2, timeout=TIMEOUT)
        # a second scan flags the names that now exist and leaves them unticked
        with qtbot.waitSignal(dialog.scanned, timeout=TIMEOUT):
            dialog.start_scan()
        again = rows(dialog)
        assert again["tiny-chat-Q8_0.gguf"][:2] == ("tiny-chat:q8_0", False)
        assert "A model of this name exists" in again["tiny-chat-Q8_0.gguf"][2]
        assert dialog.checked_rows() == [] and not dialog.import_button.isEnabled()
        r = next(i for i, c in enumerate(dialog.candidates) if c.found.path.name == "mini-stories.gguf")
        dialog.set_name(r, "mini-stories:v2")
        dialog.set_checked(r, True)
        assert dialog.note(r) == "" and dialog.import_button.isEnabled()
        dialog.set_name(r, "bad name")
        dialog.set_checked(r, True)
        assert "may hold letters, digits" in dialog.note(r) and not dialog.import_button.isEnabled()
        dialog.set_name(r, "Tiny-Chat:Q8_0")
        dialog.set_checked(
            next(i for i, c in enumerate(dialog.candidates) if c.found.path.name == "tiny-chat-Q8_0.gguf"), True
        )
        assert dialog.note(r) == "Another file here has this name" and not dialog.import_button.isEnabled()
    finally:
        desktop.shutdown()


def test_library_brings_the_first_run_screen_back_and_a_dropped_gguf_opens_the_import(
    qtbot, desktop, tiny_model_path: Path, tmp_path: Path
) -> None:
    library = desktop.show_library()
    library.add_button.click()
    home = desktop.chat_home()
    assert desktop.window.current == "chat" and home.showing_first_run
    desktop.window.resize(800, 600)  # the smallest window every page fits in
    QApplication.processEvents()
    hint = desktop.window.minimumSizeHint()
    assert hint.width() <= 800 and hint.height() <= 600, hint
    home.first_run.back_button.click()
    assert not home.showing_first_run
    dropped = tmp_path / "My Model-Q4_K_M.gguf"
    shutil.copyfile(tiny_model_path, dropped)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(dropped)), QUrl.fromLocalFile(str(tmp_path / "notes.txt"))])
    event = QDropEvent(
        QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    desktop.window.dropEvent(event)
    dialog = desktop.import_dialog
    assert dialog is not None and dialog.sources is None
    qtbot.waitUntil(lambda: bool(dialog.candidates) and not dialog.job.running, timeout=TIMEOUT)
    assert rows(dialog) == {"My Model-Q4_K_M.gguf": ("my-model:q4_k_m", True, "")}


def _import(importer, path: Path, server: LiveServer, name: str):
    results = import_files([ImportItem(path, name, path.name)], importer, server.url, lambda *a: None, lambda: False)
    assert [r.error for r in results] == [""]
    return results[0].imported


def test_hard_link_on_the_stores_file_system(
    empty_server, models_dir: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    source = tmp_path / "downloads" / "tiny.gguf"
    source.parent.mkdir()
    shutil.copyfile(tiny_model_path, source)
    os.chmod(source, 0o664)  # group-writable, as a umask of 002 makes it: the store's blobs are not
    importer = StoreLinkImporter(lambda: models_dir / "blobs", HttpBlobImporter(empty_server.url))
    assert importer.disk_use(source) == (0, "hard link")
    imported = _import(importer, source, empty_server, "linked")
    assert (imported.how, imported.extra_bytes) == ("linked", 0)
    blob = models_dir / "blobs" / imported.digest.replace(":", "-")
    assert blob.stat().st_ino == source.stat().st_ino and imported.digest == "sha256:" + sha256(source)
    assert stat.S_IMODE(blob.stat().st_mode) == 0o644  # the store's mode (shared with the original)
    assert not [p for p in blob.parent.iterdir() if p.name.startswith(".tmp-")]
    answer = ollama.Client(host=empty_server.url).generate(model="linked", prompt="Hi", options={"num_predict": 2})
    assert answer.done
    # the same bytes again: the store has them, nothing is linked twice
    again = tmp_path / "downloads" / "again.gguf"
    os.link(source, again)
    assert _import(importer, again, empty_server, "linked-again").how == "already in the store"
    # deleting the model drops the link, never the original
    httpx.request("DELETE", empty_server.url + "/api/delete", json={"model": "linked"}).raise_for_status()
    httpx.request("DELETE", empty_server.url + "/api/delete", json={"model": "linked-again"}).raise_for_status()
    assert not blob.exists() and source.read_bytes() == tiny_model_path.read_bytes()


def test_a_file_the_store_cannot_share_is_copied(
    empty_server, models_dir: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    importer = StoreLinkImporter(lambda: models_dir / "blobs", HttpBlobImporter(empty_server.url))
    executable = tmp_path / "exec.gguf"
    shutil.copyfile(tiny_model_path, executable)
    os.chmod(executable, 0o755)  # linking would take its x bits away: copied instead
    assert importer.why_not_link(executable) == "its permissions differ from the store's"
    imported = _import(importer, executable, empty_server, "copied")
    blob = models_dir / "blobs" / imported.digest.replace(":", "-")
    assert imported.how == "copied" and blob.stat().st_ino != executable.stat().st_ino
    assert stat.S_IMODE(executable.stat().st_mode) == 0o755


def test_another_file_system_falls_back_to_a_copy(
    empty_server, models_dir: Path, tiny_model_eos_path: Path, tmp_path: Path
) -> None:
    with mounted_tmpfs(tmp_path / "other", 64 * MiB) as other:
        source = other / "mini.gguf"
        shutil.copyfile(tiny_model_eos_path, source)
        importer = StoreLinkImporter(lambda: models_dir / "blobs", HttpBlobImporter(empty_server.url))
        assert importer.disk_use(source) == (source.stat().st_size, "copy")
        assert importer.why_not_link(source) == "it is on another file system than the store"
        imported = _import(importer, source, empty_server, "mini")
        blob = models_dir / "blobs" / imported.digest.replace(":", "-")
        assert imported.how == "copied" and imported.extra_bytes == source.stat().st_size
        assert blob.stat().st_dev != source.stat().st_dev and blob.read_bytes() == source.read_bytes()


def test_a_cancelled_import_leaves_no_blob(
    empty_server, models_dir: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    source = tmp_path / "tiny.gguf"
    shutil.copyfile(tiny_model_path, source)
    importer = StoreLinkImporter(lambda: models_dir / "blobs", HttpBlobImporter(empty_server.url))
    with pytest.raises(Cancelled):
        importer.import_blob(source, lambda *a: None, lambda: True)
    assert list((models_dir / "blobs").iterdir()) == []
    results = import_files(
        [ImportItem(source, "never", source.name)], importer, empty_server.url, lambda *a: None, lambda: True
    )
    assert results == [] and httpx.get(empty_server.url + "/api/tags").json()["models"] == []
