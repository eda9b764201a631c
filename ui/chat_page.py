"""The Chat page, the window's default: conversations on the side, a model picker, the transcript, the composer.

Layout for 800×600: the left column holds two tabs, the conversation list
(search, new, rename, delete) and this chat's Options (system prompt,
sampling, thinking), so the transcript keeps the width. The page draws what
`ChatSession` holds and asks it to act; it keeps no conversation state of its own
beyond what is on screen (which thinking blocks are open, the images about to be sent).

Keyboard: Enter sends, Shift+Enter starts a new line, Esc stops an answer
(or cancels an edit); the window adds Ctrl+N (new chat) and Ctrl+K (model picker).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from server import atomicfile
from ui.api_types import RunningModel, parse_tags
from ui.chat_api import ModelFacts
from ui.chat_export import to_json, to_markdown
from ui.chat_options import ChatOptionsPanel
from ui.chat_render import SAFE_LINKS, SCHEME, TranscriptRenderer, TranscriptView
from ui.chat_session import ChatSession
from ui.chat_store import ChatStore, Conversation
from ui.chat_widgets import Composer, ImageError, TranscriptBrowser, carries_images, read_image_file
from ui.client import ApiClient, Call
from ui.errors import ApiError, friendly
from ui.monitor import ServerMonitor
from ui.prompter import Prompter
from ui.status_line import StatusLine
from ui.theme import Tone, ToneLabel

ID_ROLE = Qt.ItemDataRole.UserRole + 1
RENDER_EVERY_MS = 50  # streaming redraws are coalesced to at most ~20 a second
LAST_MODEL = "last_model"
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.gif *.bmp *.webp)"


class ChatPage(QWidget):
    models_refreshed = Signal(list)  # model names
    facts_shown = Signal(object)  # ModelFacts of the picked model
    rendered = Signal()  # the transcript was redrawn
    exported = Signal(str)  # path written

    def __init__(
        self,
        client: ApiClient,
        store: ChatStore,
        monitor: ServerMonitor,
        prompter: Prompter | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.client = client
        self.store = store
        self.monitor = monitor
        self.prompter = prompter or Prompter()
        self.session = ChatSession(client, store, self)
        self.renderer = TranscriptRenderer()
        self.facts: ModelFacts | None = None
        self._facts_cache: dict[str, ModelFacts] = {}
        self._facts_call: Call | None = None
        self.expanded_thinking: set[int] = set()
        self.code_blocks: list[str] = []
        self.pending_images: list[bytes] = []
        self.editing_id: int | None = None
        self._closed = False
        self.setAcceptDrops(True)

        # -- left column: chats | options ------------------------------------------------------
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search chats…")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.textChanged.connect(lambda _: self.refresh_conversations())
        self.new_button = QPushButton("New chat")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.clicked.connect(self.new_chat)
        self.conversation_list = QListWidget()
        self.conversation_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.conversation_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.conversation_list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.conversation_list.customContextMenuRequested.connect(self._list_menu)
        self.conversation_list.currentItemChanged.connect(self._list_picked)
        self.rename_button = QPushButton("Rename…")
        self.delete_button = QPushButton("Delete…")
        self.rename_button.clicked.connect(self.ask_rename)
        self.delete_button.clicked.connect(self.ask_delete)
        for keys, do in (
            (QKeySequence(Qt.Key.Key_F2), self.ask_rename),
            (QKeySequence.StandardKey.Delete, self.ask_delete),
        ):
            shortcut = QShortcut(QKeySequence(keys), self.conversation_list)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(do)
        chats = QWidget()
        chats_layout = QVBoxLayout(chats)
        chats_layout.setContentsMargins(4, 4, 4, 4)
        chats_layout.addWidget(self.new_button)
        chats_layout.addWidget(self.search_edit)
        chats_layout.addWidget(self.conversation_list, 1)
        row = QHBoxLayout()
        row.addWidget(self.rename_button)
        row.addWidget(self.delete_button)
        chats_layout.addLayout(row)

        self.options_panel = ChatOptionsPanel()
        self.options_panel.changed.connect(self._options_edited)
        options_scroll = QScrollArea()
        options_scroll.setWidgetResizable(True)
        options_scroll.setWidget(self.options_panel)
        self.side_tabs = QTabWidget()
        self.side_tabs.addTab(chats, "Chats")
        self.side_tabs.addTab(options_scroll, "Options")
        self.side_tabs.setMinimumWidth(190)

        # -- right column: picker, transcript, composer -----------------------------------------
        self.model_combo = QComboBox()
        self.model_combo.setMinimumContentsLength(14)
        self.model_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setToolTip("Model (Ctrl+K)")
        self.model_combo.activated.connect(lambda _: self._model_picked(self.model_combo.currentText()))
        self.load_label = ToneLabel("", Tone.MUTED)
        self.load_label.setWordWrap(True)
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        export_menu = QMenu(self.export_button)
        export_menu.addAction("As Markdown…", lambda: self.export("markdown"))
        export_menu.addAction("As JSON…", lambda: self.export("json"))
        self.export_button.setMenu(export_menu)
        top = QHBoxLayout()
        top.addWidget(QLabel("Model"))
        top.addWidget(self.model_combo, 1)
        top.addWidget(self.export_button)

        self.transcript = TranscriptBrowser()
        self.transcript.anchorClicked.connect(self.handle_link)
        self.status = StatusLine()
        self.edit_banner = ToneLabel(
            "Editing your message: Enter resends it (later messages are replaced), Esc cancels.", Tone.ACCENT
        )
        self.edit_banner.setWordWrap(True)
        self.edit_banner.hide()
        self.attach_label = QLabel()
        self.clear_images_button = QPushButton("Remove images")
        self.clear_images_button.clicked.connect(self.clear_images)
        attachments = QHBoxLayout()
        attachments.addWidget(self.attach_label, 1)
        attachments.addWidget(self.clear_images_button)
        self.composer = Composer(self.accepts_images)
        self.composer.setMaximumHeight(120)
        self.composer.setMinimumHeight(52)
        self.composer.send_requested.connect(self.send_typed)
        self.composer.images_added.connect(self.add_images)
        self.composer.image_refused.connect(self.status.error)
        self.attach_button = QPushButton("Image…")
        self.attach_button.setToolTip("Attach an image (vision models only); you can also paste or drop one")
        self.attach_button.clicked.connect(self.ask_image)
        self.send_button = QPushButton("Send")
        self.send_button.setDefault(True)
        self.send_button.clicked.connect(self._send_or_stop)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.attach_button)
        buttons.addStretch(1)
        compose_row = QHBoxLayout()
        compose_row.addWidget(self.composer, 1)
        compose_row.addLayout(buttons)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(6, 6, 6, 6)
        right_layout.addLayout(top)
        right_layout.addWidget(self.load_label)
        right_layout.addWidget(self.transcript, 1)
        right_layout.addWidget(self.status)
        right_layout.addWidget(self.edit_banner)
        right_layout.addLayout(attachments)
        right_layout.addLayout(compose_row)
        right.setMinimumWidth(360)

        splitter = QSplitter()
        splitter.addWidget(self.side_tabs)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([230, 720])
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

        escape = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        escape.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        escape.activated.connect(self.escape)

        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(RENDER_EVERY_MS)
        self._render_timer.timeout.connect(self.redraw)
        self.session.piece.connect(self._piece)
        self.session.changed.connect(self.redraw)
        self.session.busy_changed.connect(self._busy_changed)
        self.session.conversations_changed.connect(self.refresh_conversations)
        self.session.problem.connect(self.status.error)
        self.session.answer_finished.connect(lambda *_: self.monitor.refresh())
        self.monitor.running_changed.connect(lambda _: self._update_load_label())

        self._update_attachments()
        self._busy_changed(False)
        self.refresh_conversations()
        recent = self.store.conversations()
        if recent:
            self.open_conversation(recent[0].id)
        else:
            self.redraw()
        if self.store.recovered:
            self.status.busy(
                f"{self.store.recovered} answer(s) were cut short when pollama last closed; kept as they were."
            )

    # -- page hooks ------------------------------------------------------------------------
    def activated(self) -> None:
        self.refresh_models()
        self.composer.setFocus()

    def new_chat(self) -> Conversation:
        if self.editing_id is not None:
            self.cancel_edit()
        conv = self.session.new_conversation(self.current_model())
        self.search_edit.clear()
        self.refresh_conversations()
        self._load_options(conv)
        self.side_tabs.setCurrentIndex(0)
        self.composer.setFocus()
        return conv

    def focus_model_picker(self) -> None:
        self.model_combo.setFocus()
        self.model_combo.showPopup()

    # -- models ------------------------------------------------------------------------------
    def refresh_models(self) -> Call:
        call = self.client.tags()
        call.succeeded.connect(self._got_tags)
        call.failed.connect(lambda e: self.status.error(friendly(e)))
        return call

    def _got_tags(self, body: Any) -> None:
        names = [m.name for m in parse_tags(body)]
        wanted = (self.session.conversation.model if self.session.conversation else "") or self.store.get_meta(
            LAST_MODEL
        )
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems(names)
        if wanted and wanted not in names:
            self.model_combo.addItem(wanted)  # the chat's model was deleted: keep showing it, sending says so
        if wanted:
            self.model_combo.setCurrentText(wanted)
        self.model_combo.blockSignals(False)
        if not names:
            self.load_label.setText("No model is installed yet. Get one on the Downloads page.")
        current = self.current_model()
        if current and (self.facts is None or self.facts.name != current):
            self._model_picked(current, remember=bool(wanted))
        else:
            self._update_load_label()
        self.models_refreshed.emit(names)

    def current_model(self) -> str:
        return self.model_combo.currentText()

    def pick_model(self, name: str) -> None:
        """What choosing `name` in the picker does (tests and the keyboard use it too)."""
        if self.model_combo.findText(name) < 0:
            self.model_combo.addItem(name)
        self.model_combo.setCurrentText(name)
        self._model_picked(name)

    def _model_picked(self, name: str, *, remember: bool = True) -> None:
        if not name:
            return
        if remember:
            self.store.set_meta(LAST_MODEL, name)
        conv = self.session.conversation
        if conv is not None and conv.model != name:
            self.session.update(model=name)
        self._update_load_label()
        self._fetch_facts(name)

    def _fetch_facts(self, name: str) -> None:
        cached = self._facts_cache.get(name)
        if cached is not None:
            self._show_facts(cached)
            return
        if self._facts_call is not None:
            self._facts_call.abort()
        self._facts_call = call = self.client.show(name)
        call.succeeded.connect(lambda body, n=name: self._got_show(n, body))

        def failed(error: ApiError) -> None:
            if error.network != "cancelled":
                self._show_facts(ModelFacts(name))
                self.status.error(friendly(error))

        call.failed.connect(failed)

    def _got_show(self, name: str, body: Any) -> None:
        facts = ModelFacts.from_show(name, body)
        self._facts_cache[name] = facts
        if name == self.current_model():
            self._show_facts(facts)

    def _show_facts(self, facts: ModelFacts) -> None:
        self.facts = facts
        self.options_panel.show_facts(facts)
        self._update_attachments()
        self.facts_shown.emit(facts)

    def _running(self) -> list[RunningModel]:
        return self.monitor.running

    def is_loaded(self, name: str) -> bool:
        full = name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"
        return any(m.name in (name, full) for m in self._running())

    def _update_load_label(self) -> None:
        name = self.current_model()
        if not name:
            return
        if self.is_loaded(name):
            self.load_label.setText(f"● {name} is loaded.")
        else:
            self.load_label.setText(f"○ {name} is not loaded: it loads when you send the first message.")

    # -- conversations ----------------------------------------------------------------------
    def refresh_conversations(self) -> None:
        current = self.session.conversation.id if self.session.conversation else None
        self.conversation_list.blockSignals(True)
        self.conversation_list.clear()
        for conv in self.store.conversations(self.search_edit.text()):
            item = QListWidgetItem(conv.title)
            item.setData(ID_ROLE, conv.id)
            item.setToolTip(f"{conv.title}\n{conv.model}")
            self.conversation_list.addItem(item)
            if conv.id == current:
                self.conversation_list.setCurrentItem(item)
        self.conversation_list.blockSignals(False)
        has = self.session.conversation is not None
        self.rename_button.setEnabled(has)
        self.delete_button.setEnabled(has)
        self.export_button.setEnabled(has)

    def conversation_titles(self) -> list[str]:
        return [self.conversation_list.item(r).text() for r in range(self.conversation_list.count())]

    def _list_picked(self, item: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if item is not None:
            self.open_conversation(int(item.data(ID_ROLE)))

    def open_conversation(self, conversation_id: int) -> Conversation | None:
        if self.editing_id is not None:
            self.cancel_edit()
        self.expanded_thinking.clear()
        conv = self.session.open(conversation_id)
        if conv is None:
            return None
        self._load_options(conv)
        if conv.model:
            if self.model_combo.findText(conv.model) < 0:
                self.model_combo.addItem(conv.model)
            self.model_combo.setCurrentText(conv.model)
            self._update_load_label()
            self._fetch_facts(conv.model)
        self.refresh_conversations()
        return conv

    def _load_options(self, conv: Conversation) -> None:
        self.options_panel.load(conv.system, conv.options)

    def _options_edited(self) -> None:
        if self.session.conversation is None:  # options set before the first message start the chat
            self.session.new_conversation(self.current_model())
            self.refresh_conversations()
        self.session.update(system=self.options_panel.system(), options=self.options_panel.options())

    def _list_menu(self, pos: Any) -> None:
        item = self.conversation_list.itemAt(pos)
        if item is None:
            return
        self.open_conversation(int(item.data(ID_ROLE)))
        menu = QMenu(self)
        menu.addAction("Rename…", self.ask_rename)
        menu.addAction("Export as Markdown…", lambda: self.export("markdown"))
        menu.addAction("Export as JSON…", lambda: self.export("json"))
        menu.addSeparator()
        menu.addAction("Delete…", self.ask_delete)
        menu.popup(self.conversation_list.viewport().mapToGlobal(pos))

    def ask_rename(self) -> None:
        conv = self.session.conversation
        if conv is None:
            return
        title = self.prompter.ask_text(self, "Rename chat", "New name for this chat:", conv.title)
        if title:
            self.rename(title)

    def rename(self, title: str) -> None:
        if self.session.conversation is not None and title.strip():
            self.session.update(title=title.strip())
            self.refresh_conversations()

    def ask_delete(self) -> None:
        conv = self.session.conversation
        if conv is not None and self.prompter.confirm(
            self, "Delete chat", f"Delete “{conv.title}” and all its messages?"
        ):
            self.delete_conversation(conv.id)

    def delete_conversation(self, conversation_id: int) -> None:
        live = self.session.live
        if live is not None and live.conversation_id == conversation_id:
            self.session.stop()
        self.store.delete_conversation(conversation_id)
        self.session.close_conversation()
        rest = self.store.conversations(self.search_edit.text()) or self.store.conversations()
        if rest:
            self.open_conversation(rest[0].id)
        else:
            self.refresh_conversations()
            self.redraw()

    # -- sending -----------------------------------------------------------------------------
    def accepts_images(self) -> bool:
        return self.facts is not None and self.facts.vision and self.facts.name == self.current_model()

    def send_typed(self) -> bool:
        text = self.composer.toPlainText()
        images = list(self.pending_images)
        if not text.strip() and not images:
            return False
        if images and not self.accepts_images():
            self.status.error("This model does not take images. Pick a vision model, or remove the images.")
            return False
        if self.session.conversation is None:
            self.new_chat()
        if not self.current_model():
            self.status.error("Pick a model first (Ctrl+K).")
            return False
        if self.session.conversation is not None and not self.session.conversation.model:
            self.session.update(model=self.current_model())
        if self.editing_id is not None:
            ok = self.session.edit_and_resend(self.editing_id, text, images or None)
        else:
            ok = self.session.send(text, images)
        if ok:
            self.composer.clear()
            self.clear_images()
            self._end_edit()
            self.status.busy(self._waiting_text())
        return ok

    def _waiting_text(self) -> str:
        name = self.current_model()
        return f"Loading {name}…" if not self.is_loaded(name) else f"{name} is answering…"

    def _piece(self, _message_id: int) -> None:
        if not self._render_timer.isActive():
            self._render_timer.start()
        if self.status.kind == "busy" and self.status.text().startswith("Loading"):
            self.status.busy(f"{self.current_model()} is answering…")

    def _send_or_stop(self) -> None:
        if self.session.busy:
            self.stop()
        else:
            self.send_typed()

    def stop(self) -> bool:
        return self.session.stop()

    def regenerate(self) -> bool:
        ok = self.session.regenerate()
        if ok:
            self.status.busy(self._waiting_text())
        return ok

    def escape(self) -> None:
        if self.session.busy:
            self.stop()
        elif self.editing_id is not None:
            self.cancel_edit()

    def _busy_changed(self, busy: bool) -> None:
        self.send_button.setText("Stop" if busy else "Send")
        self.send_button.setToolTip("Stop the answer (Esc)" if busy else "Send (Enter)")
        if not busy and self.status.kind == "busy":
            self.status.ok("")

    # -- editing -----------------------------------------------------------------------------
    def start_edit(self, message_id: int) -> bool:
        message = self.store.message(message_id)
        if message is None or message.role != "user" or self.session.busy:
            return False
        self.editing_id = message_id
        self.composer.setPlainText(message.content)
        self.pending_images = list(message.images)
        self._update_attachments()
        self.edit_banner.show()
        self.composer.setFocus()
        return True

    def cancel_edit(self) -> None:
        self.composer.clear()
        self.clear_images()
        self._end_edit()

    def _end_edit(self) -> None:
        self.editing_id = None
        self.edit_banner.hide()

    # -- images ------------------------------------------------------------------------------
    def ask_image(self) -> None:
        if not self.accepts_images():
            self.status.error("This model does not take images. Pick a vision model to send pictures.")
            return
        path = self.prompter.open_file(self, "Attach an image", IMAGE_FILTER)
        if path is not None:
            self.attach_file(path)

    def attach_file(self, path: Path) -> bool:
        try:
            self.add_images([read_image_file(path)])
        except ImageError as exc:
            self.status.error(str(exc) + ".")
            return False
        return True

    def add_images(self, images: list[bytes]) -> None:
        self.pending_images.extend(images)
        self._update_attachments()

    def clear_images(self) -> None:
        self.pending_images.clear()
        self._update_attachments()

    def _update_attachments(self) -> None:
        n = len(self.pending_images)
        self.attach_label.setText(f"🖼 {n} image{'s' if n != 1 else ''} attached" if n else "")
        self.attach_label.setVisible(bool(n))
        self.clear_images_button.setVisible(bool(n))
        vision = self.accepts_images()
        self.attach_button.setEnabled(vision)
        self.attach_button.setToolTip(
            "Attach an image; you can also paste or drop one"
            if vision
            else "This model does not take images (its capabilities do not include vision)"
        )

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if carries_images(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        if not carries_images(mime):
            event.ignore()
            return
        event.acceptProposedAction()
        self.composer.insertFromMimeData(mime)

    # -- transcript ------------------------------------------------------------------------------
    def redraw(self) -> None:
        self._render_timer.stop()
        if self._closed:
            return
        messages = self.session.messages()
        assistants = [m.id for m in messages if m.role == "assistant"]
        view = TranscriptView(
            expanded_thinking=frozenset(self.expanded_thinking),
            streaming_id=self.session.live.id if self.session.live else None,
            last_assistant_id=assistants[-1] if assistants and messages[-1].role == "assistant" else None,
        )
        result = self.renderer.render(messages, view, self.palette())
        self.code_blocks = result.code_blocks
        self.transcript.set_transcript(result.html, result.images)
        self.rendered.emit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._render_timer.start()

    def handle_link(self, url: QUrl) -> None:
        text = url.toString()
        if url.scheme() != SCHEME:
            if text.startswith(SAFE_LINKS):
                QDesktopServices.openUrl(url)
            return
        action, _, arg = url.path().partition("/")
        try:
            number = int(arg)
        except ValueError:
            return
        if action == "copy" and 0 <= number < len(self.code_blocks):
            QGuiApplication.clipboard().setText(self.code_blocks[number])
            self.status.ok("Code copied.")
        elif action == "copy-message":
            message = self.store.message(number)
            if message is not None:
                QGuiApplication.clipboard().setText(message.content)
                self.status.ok("Answer copied.")
        elif action == "think":
            self.expanded_thinking.symmetric_difference_update({number})
            self.redraw()
        elif action == "edit":
            self.start_edit(number)
        elif action == "regenerate":
            self.regenerate()

    # -- export ------------------------------------------------------------------------------
    def export(self, kind: str, path: Path | None = None) -> Path | None:
        conv = self.session.conversation
        if conv is None:
            return None
        suffix = ".md" if kind == "markdown" else ".json"
        if path is None:
            stem = "".join(c if c.isalnum() or c in " -_" else "_" for c in conv.title).strip() or "chat"
            path = self.prompter.save_file(
                self, "Export chat", stem + suffix, "Markdown (*.md)" if kind == "markdown" else "JSON (*.json)"
            )
            if path is None:
                return None
        messages = self.store.messages(conv.id)
        text = to_markdown(conv, messages) if kind == "markdown" else to_json(conv, messages)
        try:
            atomicfile.write_text(path, text)
        except OSError as exc:
            self.status.error(f"Could not write {path.name}: {exc.strerror or exc}.")
            return None
        self.status.ok(f"Exported to {path}.")
        self.exported.emit(str(path))
        return path

    def shutdown(self) -> None:
        """The app quits: stop the answer (kept as stopped), then draw nothing more (the store closes next)."""
        self.session.shutdown()
        self._closed = True
        self._render_timer.stop()
