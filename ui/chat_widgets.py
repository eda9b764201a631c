"""The Chat page's two special widgets: the transcript (a safe rich-text view) and the composer.

The transcript is a `QTextBrowser` that loads no resource it was not
handed (no remote image, no local file a model names), opens no link by
itself, and keeps the reader's scroll position unless they were at the end.

The composer sends on Enter and starts a new line on Shift+Enter, and takes
images by paste or drop when the page allows them (only for vision models).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QIODevice, QMimeData, Qt, QUrl, Signal
from PySide6.QtGui import QImage, QKeyEvent, QTextDocument
from PySide6.QtWidgets import QPlainTextEdit, QTextBrowser, QWidget

#: What the server's image decoder (stb_image in libmtmd) reads as is; other formats are converted to PNG.
PASS_THROUGH = (b"\x89PNG", b"\xff\xd8\xff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
MAX_IMAGE_BYTES = 20_000_000


class ImageError(ValueError):
    """A file or clipboard item that is not an image pollama can send."""


def image_bytes(data: bytes, name: str = "the image") -> bytes:
    """PNG or JPEG as they are; anything else Qt can read, re-encoded as PNG."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{name} is larger than {MAX_IMAGE_BYTES // 1_000_000} MB")
    if data.startswith(PASS_THROUGH):
        return data
    image = QImage.fromData(data)
    if image.isNull():
        raise ImageError(f"{name} is not an image pollama can read")
    return png_bytes(image)


def png_bytes(image: QImage) -> bytes:
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")  # type: ignore[call-overload]  # the stubs say bytes; PySide6 takes only str
    return bytes(buffer.data().data())


def read_image_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    return image_bytes(data, path.name)


def images_in(mime: QMimeData) -> list[bytes]:
    """Images carried by a paste or a drop: image data, or local image files. Raises ImageError for bad files."""
    if mime.hasImage():
        image = mime.imageData()
        if isinstance(image, QImage) and not image.isNull():
            return [png_bytes(image)]
    out = []
    for url in mime.urls() if mime.hasUrls() else []:
        if url.isLocalFile() and url.toLocalFile().lower().endswith(IMAGE_SUFFIXES):
            out.append(read_image_file(Path(url.toLocalFile())))
    return out


def carries_images(mime: QMimeData) -> bool:
    return mime.hasImage() or any(
        u.isLocalFile() and u.toLocalFile().lower().endswith(IMAGE_SUFFIXES)
        for u in (mime.urls() if mime.hasUrls() else [])
    )


class TranscriptBrowser(QTextBrowser):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)
        self._resources: dict[str, bytes] = {}

    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        """Only the images the page registered; nothing from the network or the disk."""
        data = self._resources.get(name.toString() if isinstance(name, QUrl) else name)
        if data is not None and getattr(kind, "value", kind) == QTextDocument.ResourceType.ImageResource.value:
            image = QImage.fromData(data)
            return image if not image.isNull() else None
        return None

    def set_transcript(self, html: str, images: dict[str, bytes]) -> None:
        bar = self.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        keep = bar.value()
        self._resources = dict(images)
        self.setHtml(html)
        bar.setValue(bar.maximum() if at_end else keep)


class Composer(QPlainTextEdit):
    """Enter sends, Shift+Enter is a new line; images come in by paste or drop when `accept_images()` says so."""

    send_requested = Signal()
    images_added = Signal(list)  # list[bytes]
    image_refused = Signal(str)

    def __init__(self, accept_images: Callable[[], bool], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.accept_images = accept_images
        self.setPlaceholderText("Message (Enter sends, Shift+Enter for a new line)")
        self.setTabChangesFocus(True)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.send_requested.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def canInsertFromMimeData(self, source: QMimeData) -> bool:
        if carries_images(source):
            return True  # refused with a reason in insertFromMimeData when the model cannot see
        return super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:
        if not carries_images(source):
            super().insertFromMimeData(source)
            return
        if not self.accept_images():
            self.image_refused.emit("This model does not take images. Pick a vision model to send pictures.")
            return
        try:
            images = images_in(source)
        except ImageError as exc:
            self.image_refused.emit(str(exc) + ".")
            return
        if images:
            self.images_added.emit(images)


def mime_with_image(image: QImage) -> QMimeData:
    """A clipboard payload holding one image (what a screenshot tool puts there)."""
    mime = QMimeData()
    mime.setImageData(image)
    return mime


def mime_with_files(paths: list[Path]) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime
