"""The model library: every local model, sortable and filterable, with details from `/api/show`.

Delete (after a confirmation), copy, and create from a Modelfile or from a
`.gguf` file dropped on the window. Every action is a method as well as a
button, and all of them report back in a status line rather than dialogs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ui.api_types import LocalModel, ShowInfo, parse_tags
from ui.client import ApiClient, Call
from ui.create_dialog import CreateDialog
from ui.errors import ApiError, friendly
from ui.format import human_size, relative_time
from ui.modelfile import ModelfileError, ModelfilePlan, plan
from ui.prompter import Prompter
from ui.status_line import StatusLine
from ui.theme import Tone, ToneLabel

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
Index = QModelIndex | QPersistentModelIndex
#: The invisible root, the default parent in Qt's item-model calls (one instance, not one per call).
_ROOT = QModelIndex()


class ModelTable(QAbstractTableModel):
    COLUMNS = ("Name", "ID", "Size", "Family", "Parameters", "Quantization", "Modified")

    def __init__(self) -> None:
        super().__init__()
        self.models: list[LocalModel] = []

    def set_models(self, models: list[LocalModel]) -> None:
        self.beginResetModel()
        self.models = list(models)
        self.endResetModel()

    def rowCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.models)

    def columnCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        m = self.models[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (
                m.name,
                m.id,
                human_size(m.size),
                m.details.family,
                m.details.parameter_size,
                m.details.quantization_level,
                relative_time(m.modified_at),
            )[col]
        if role == SORT_ROLE:
            if col == 2:
                return m.size
            if col == 6:
                return (m.modified_at or dt.datetime.min.replace(tzinfo=dt.UTC)).timestamp()
            if col == 4:
                return _param_count(m.details.parameter_size)
            return str(self.data(index)).lower()
        if role == Qt.ItemDataRole.ToolTipRole and col == 6 and m.modified_at:
            return m.modified_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def _param_count(text: str) -> float:
    """'7.6B' → 7.6e9, so the Parameters column sorts by size, not alphabetically."""
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
    text = text.strip().upper()
    try:
        return float(text[:-1]) * scale[text[-1]] if text and text[-1] in scale else float(text or 0)
    except ValueError:
        return 0.0


class DetailsPane(QTabWidget):
    """What `/api/show` says about the selected model."""

    def __init__(self) -> None:
        super().__init__()
        self.overview = QLabel("Select a model to see its details.")
        self.overview.setWordWrap(True)
        self.overview.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.overview.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.overview.setMargin(8)
        self.parameters = self._text()
        self.template = self._text()
        self.system = self._text()
        self.license = self._text()
        self.info = QTableWidget(0, 2)
        self.info.setHorizontalHeaderLabels(["Key", "Value"])
        self.info.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.info.verticalHeader().setVisible(False)
        self.info.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        for widget, title in (
            (self.overview, "Overview"),
            (self.parameters, "Parameters"),
            (self.template, "Template"),
            (self.system, "System"),
            (self.license, "License"),
            (self.info, "Model info"),
        ):
            self.addTab(widget, title)
        self.shown: ShowInfo | None = None

    @staticmethod
    def _text() -> QPlainTextEdit:
        edit = QPlainTextEdit()
        edit.setReadOnly(True)
        edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        return edit

    def show_info(self, model: LocalModel, info: ShowInfo) -> None:
        self.shown = info
        d = info.details
        rows = [
            ("Name", model.name),
            ("ID", model.id),
            ("Size", human_size(model.size)),
            ("Family", d.family),
            ("Parameters", d.parameter_size),
            ("Quantization", d.quantization_level),
            ("Format", d.format),
            ("Capabilities", ", ".join(info.capabilities) or "—"),
        ]
        self.overview.setText(
            "<table cellspacing='4'>"
            + "".join(f"<tr><td><b>{k}</b></td><td>{_html(v)}</td></tr>" for k, v in rows if v)
            + "</table>"
        )
        self.parameters.setPlainText(info.parameters or "(none)")
        self.template.setPlainText(info.template or "(none)")
        self.system.setPlainText(info.system or "(none)")
        self.license.setPlainText(info.license or "(none)")
        self.info.setRowCount(len(info.model_info))
        for row, (key, value) in enumerate(info.model_info):
            self.info.setItem(row, 0, QTableWidgetItem(key))
            self.info.setItem(row, 1, QTableWidgetItem(value))
        self.info.resizeColumnToContents(0)

    def clear_info(self, text: str = "Select a model to see its details.") -> None:
        self.shown = None
        self.overview.setText(text)
        for edit in (self.parameters, self.template, self.system, self.license):
            edit.clear()
        self.info.setRowCount(0)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class LibraryWindow(QWidget):
    refreshed = Signal(list)  # list[LocalModel]
    operation_done = Signal(str)
    operation_failed = Signal(str)
    details_shown = Signal(str)
    add_models_requested = Signal()  # the first-run screen's three ways: discover, drop, import from disk

    def __init__(self, client: ApiClient, prompter: Prompter | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.prompter = prompter or Prompter()
        self.setWindowTitle("pollama — Models")
        self.setAcceptDrops(True)
        self.resize(1100, 620)

        self.table_model = ModelTable()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter models…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self.proxy.setFilterFixedString)

        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(6, Qt.SortOrder.DescendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.verticalHeader().setVisible(False)
        self.view.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.view.setAlternatingRowColors(True)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)

        self.details = DetailsPane()
        self.status = StatusLine()

        self.refresh_button = QPushButton("Refresh")
        self.add_button = QPushButton("Add models…")
        self.add_button.setToolTip("Discover a model, drop a .gguf, or import the GGUFs already on this computer")
        self.add_button.clicked.connect(self.add_models_requested)
        self.create_button = QPushButton("Create…")
        self.copy_button = QPushButton("Copy…")
        self.delete_button = QPushButton("Delete…")
        self.refresh_button.clicked.connect(self.refresh)
        self.create_button.clicked.connect(self.open_create_dialog)
        self.copy_button.clicked.connect(self.ask_copy)
        self.delete_button.clicked.connect(self.ask_delete)

        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 1)
        for b in (self.refresh_button, self.add_button, self.create_button, self.copy_button, self.delete_button):
            top.addWidget(b)
        hint = ToneLabel("Drop a .gguf file here to create a model from it.", Tone.MUTED)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.view)
        left_layout.addWidget(hint)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.details)
        splitter.setSizes([650, 450])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)
        self._update_buttons()
        self._show_call: Call | None = None
        self.create_dialog: CreateDialog | None = None

    def activated(self) -> None:
        """Shown as a page: the list may be stale (another app pulled or deleted a model)."""
        self.refresh()

    # -- listing ---------------------------------------------------------------------------
    def refresh(self) -> Call:
        call = self.client.tags()
        call.succeeded.connect(self._got_tags)
        call.failed.connect(lambda e: self.status.error(friendly(e)))
        return call

    def _got_tags(self, body: Any) -> None:
        selected = self.selected_name()
        models = parse_tags(body)
        self.table_model.set_models(models)
        if selected:
            self.select(selected)
        self._update_buttons()
        self.refreshed.emit(models)

    def names(self) -> list[str]:
        """Model names in the order the table shows them (sorted and filtered)."""
        return [self.proxy.index(r, 0).data() for r in range(self.proxy.rowCount())]

    def select(self, name: str) -> bool:
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, 0).data() == name:
                self.view.selectRow(row)
                return True
        return False

    def selected_model(self) -> LocalModel | None:
        rows = self.view.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table_model.models[self.proxy.mapToSource(rows[0]).row()]

    def selected_name(self) -> str | None:
        model = self.selected_model()
        return model.name if model else None

    def _update_buttons(self) -> None:
        has = self.selected_model() is not None
        self.copy_button.setEnabled(has)
        self.delete_button.setEnabled(has)

    def _selection_changed(self) -> None:
        self._update_buttons()
        model = self.selected_model()
        if model is None:
            self.details.clear_info()
            return
        if self._show_call is not None:
            self._show_call.abort()
        self._show_call = call = self.client.show(model.name)
        call.succeeded.connect(lambda body, m=model: self._got_show(m, body))

        def failed(error: ApiError) -> None:
            if error.network != "cancelled":
                self.details.clear_info(friendly(error))

        call.failed.connect(failed)

    def _got_show(self, model: LocalModel, body: Any) -> None:
        if isinstance(body, dict) and self.selected_name() == model.name:
            self.details.show_info(model, ShowInfo.from_json(body))
            self.details_shown.emit(model.name)

    # -- delete / copy ---------------------------------------------------------------------
    def ask_delete(self) -> None:
        name = self.selected_name()
        if name and self.prompter.confirm(
            self, "Delete model", f"Delete {name}? Its files are removed unless another model shares them."
        ):
            self.delete(name)

    def delete(self, name: str) -> Call:
        self.status.busy(f"Deleting {name}…")
        return self._then_refresh(self.client.delete(name), f"Deleted {name}.")

    def ask_copy(self) -> None:
        name = self.selected_name()
        if not name:
            return
        target = self.prompter.ask_text(self, "Copy model", f"Copy {name} to the name:", f"{name.split(':')[0]}-copy")
        if target:
            self.copy(name, target)

    def copy(self, source: str, destination: str) -> Call:
        self.status.busy(f"Copying {source} to {destination}…")
        return self._then_refresh(self.client.copy(source, destination), f"Copied {source} to {destination}.")

    def _then_refresh(self, call: Call, message: str) -> Call:
        def ok(_: Any) -> None:
            self.status.ok(message)
            self.refresh()
            self.operation_done.emit(message)

        def bad(error: ApiError) -> None:
            text = friendly(error)
            self.status.error(text)
            self.operation_failed.emit(text)

        call.succeeded.connect(ok)
        call.failed.connect(bad)
        return call

    # -- create ----------------------------------------------------------------------------
    def open_create_dialog(self) -> CreateDialog:
        dialog = CreateDialog(self.prompter, self)
        dialog.submitted.connect(self.create_from_modelfile)
        self.create_dialog = dialog
        dialog.show()
        return dialog

    def create_from_modelfile(self, name: str, text: str, base_dir: Path | None = None) -> None:
        try:
            p = plan(text, base_dir)
        except ModelfileError as exc:
            self.status.error(f"The Modelfile has a problem: {exc}.")
            self.operation_failed.emit(str(exc))
            return
        self._create(name, p)

    def create_from_gguf(self, name: str, path: Path) -> None:
        self._create(name, ModelfilePlan(model_file=path))

    def _create(self, name: str, p: ModelfilePlan) -> None:
        body: dict[str, Any] = {"model": name, **p.body}
        uploads = [(key, path) for key, path in (("files", p.model_file), ("adapters", p.adapter_file)) if path]
        self._upload_then_create(body, uploads)

    def _upload_then_create(self, body: dict[str, Any], uploads: list[tuple[str, Path]]) -> None:
        if uploads:
            key, path = uploads[0]
            self.status.busy(f"Reading {path.name}…")
            up = self.client.upload_blob(path)

            def uploaded(digest: str) -> None:
                body[key] = {path.name: digest}
                self._upload_then_create(body, uploads[1:])

            up.succeeded.connect(uploaded)
            up.failed.connect(lambda e: self._create_failed(friendly(e)))
            return
        name = body["model"]
        self.status.busy(f"Creating {name}…")
        call = self.client.create(body)
        call.received.connect(lambda ev: self.status.busy(f"Creating {name}: {ev.get('status', '')}"))
        self._then_refresh(call, f"Created {name}.")

    def _create_failed(self, text: str) -> None:
        self.status.error(text)
        self.operation_failed.emit(text)

    # -- drag and drop ---------------------------------------------------------------------
    @staticmethod
    def _gguf_paths(event: QDragEnterEvent | QDropEvent) -> list[Path]:
        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        return [
            Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile() and u.toLocalFile().lower().endswith(".gguf")
        ]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._gguf_paths(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = self._gguf_paths(event)
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        for path in paths:
            default = path.stem.lower().replace(" ", "-")
            name = self.prompter.ask_text(self, "Create model", f"Name for the model made from {path.name}:", default)
            if name:
                self.create_from_gguf(name, path)
