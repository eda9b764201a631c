"""Discover: find a model to download, see whether it fits this machine before downloading, pull it.

Two lists behind one search box:
- **Ollama library**: the curated catalog shipped in `resources/catalog.json`
  (`ui/catalog.py`), filtered as one types, by capability, and to the sizes
  that fit;
- **Hugging Face**: GGUF repositories searched live (`ui/hf_search.py`, on a
  thread pool), each listing its GGUF files by quantization with sizes
  (`ui/gguf_files.py`), pulled through pollama's own `hf.co/<repo>:<quant>`.

Every downloadable row says fits / tight / does not fit (`ui/discover_fit.py`):
a guess from the download size at first, replaced by the server's estimate
(`/api/pollama/estimate`, which reads only the manifest and GGUF header of a
model not pulled yet) for the row that is selected. Pulls go through the
app's pull manager, so they show on the Downloads page as any other, and
their progress shows in the row here too.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.api_types import Devices, Estimate, parse_tags
from ui.catalog import CAPABILITIES, Catalog, CatalogFilter, CatalogRow, filter_catalog, load_catalog
from ui.client import ApiClient
from ui.discover_fit import TIGHT_MEANS, FitView, from_estimate, from_size
from ui.discover_rows import FIT_COL, PULL_ROLE, STATUS_COL, Downloadable, RowBook
from ui.errors import ApiError, friendly
from ui.format import human_size
from ui.gguf_files import RepoModels
from ui.hf_search import HfRepo, HfSearch
from ui.pull_manager import PullManager, PullStatus
from ui.status_line import StatusLine
from ui.theme import Tone, ToneLabel

log = logging.getLogger("pollama.ui.discover")

COLUMNS = ("Model", "Size", "Will it fit", "Download")
HF_COLUMNS = ("Quantization", "Size", "Will it fit", "Download")
REPO_ROLE = Qt.ItemDataRole.UserRole + 11
#: Context lengths offered for the estimate (0: the model's own default).
CONTEXTS = (0, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


def top_items(tree: QTreeWidget) -> list[QTreeWidgetItem]:
    return [item for i in range(tree.topLevelItemCount()) if (item := tree.topLevelItem(i)) is not None]


def children(item: QTreeWidgetItem) -> list[QTreeWidgetItem]:
    return [child for j in range(item.childCount()) if (child := item.child(j)) is not None]


class DiscoverPage(QWidget):
    catalog_shown = Signal(int)  # rows (models) shown
    hf_results_shown = Signal(list)  # [repo id]
    hf_files_shown = Signal(str)  # repo id
    estimate_shown = Signal(str, object)  # pull name, FitView
    devices_loaded = Signal(object)  # free bytes (an int past 2**31: not Signal(int))

    def __init__(
        self,
        client: ApiClient,
        pulls: PullManager,
        catalog: Catalog | None = None,
        hf: HfSearch | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.client = client
        self.pulls = pulls
        self.catalog = catalog if catalog is not None else load_catalog()
        self.hf = hf or HfSearch(self)
        self.rows = RowBook()
        self.free_memory = 0
        self.free_where = "memory"
        self.local: set[str] = set()
        self._estimates: dict[tuple[str, int], FitView] = {}
        self._estimating: set[tuple[str, int]] = set()
        self._hf_search_seq = 0
        self._hf_files_seq = 0
        self._hf_repo = ""
        self._hf_models = RepoModels()
        self._about: dict[str, str] = {}  # pull name → a line about it for the detail below the lists

        # -- the bar: one search box for both lists, filters below it ----------------------------
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search models — Enter also searches Hugging Face")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.textChanged.connect(lambda _: self.refilter())
        self.search_box.returnPressed.connect(self._enter)
        self.hf_button = QPushButton("Search Hugging Face")
        self.hf_button.clicked.connect(lambda: self.search_hf(self.search_box.text()))
        self.cap_boxes: dict[str, QCheckBox] = {}
        for cap in CAPABILITIES:
            box = QCheckBox(cap.capitalize())
            box.setToolTip(f"Only models with the {cap} capability")
            box.toggled.connect(lambda _: self.refilter())
            self.cap_boxes[cap] = box
        self.fits_only = QCheckBox("Only sizes that fit")
        self.fits_only.setToolTip("Hide downloads larger than this machine's free memory")
        self.fits_only.toggled.connect(lambda _: self.refilter())
        self.context_combo = QComboBox()
        for ctx in CONTEXTS:
            self.context_combo.addItem("Model's context" if ctx == 0 else f"{ctx // 1024}K context", ctx)
        self.context_combo.setToolTip("The context length the fit is estimated for (the KV cache grows with it)")
        self.context_combo.currentIndexChanged.connect(lambda _: self._context_changed())

        top = QHBoxLayout()
        top.addWidget(self.search_box, 1)
        top.addWidget(self.hf_button)
        filters = QHBoxLayout()
        for box in self.cap_boxes.values():
            filters.addWidget(box)
        filters.addStretch(1)
        filters.addWidget(self.fits_only)
        filters.addWidget(self.context_combo)

        # -- Ollama library ---------------------------------------------------------------------
        self.catalog_tree = self._tree(COLUMNS)
        self.catalog_tree.currentItemChanged.connect(lambda item, _: self._picked(item))
        source_note = (
            "Sizes as the Ollama library lists them (rounded)."
            if self.catalog.source != "registry"
            else "Sizes from the registry's manifests."
        )
        self.catalog_note = ToneLabel(
            f"{len(self.catalog.models)} popular models of the Ollama library. {source_note}", Tone.MUTED
        )
        self.catalog_note.setWordWrap(True)
        library = QWidget()
        lib_layout = QVBoxLayout(library)
        lib_layout.setContentsMargins(0, 0, 0, 0)
        lib_layout.addWidget(self.catalog_tree, 1)
        lib_layout.addWidget(self.catalog_note)

        # -- Hugging Face -----------------------------------------------------------------------
        self.hf_repos = QListWidget()
        self.hf_repos.currentItemChanged.connect(lambda item, _: self._repo_picked(item))
        self.hf_files = self._tree(HF_COLUMNS)
        self.hf_files.setRootIsDecorated(False)
        self.hf_files.currentItemChanged.connect(lambda item, _: self._picked(item))
        self.hf_note = ToneLabel("Type a name and press Enter to search Hugging Face for GGUF models.", Tone.MUTED)
        self.hf_note.setWordWrap(True)
        hf_split = QSplitter()
        hf_split.addWidget(self.hf_repos)
        hf_split.addWidget(self.hf_files)
        hf_split.setSizes([260, 400])
        hugging = QWidget()
        hf_layout = QVBoxLayout(hugging)
        hf_layout.setContentsMargins(0, 0, 0, 0)
        hf_layout.addWidget(hf_split, 1)
        hf_layout.addWidget(self.hf_note)

        self.tabs = QTabWidget()
        self.tabs.addTab(library, "Ollama library")
        self.tabs.addTab(hugging, "Hugging Face")
        self.tabs.currentChanged.connect(lambda _: self._picked(self._current_item()))

        # -- the choice: what it is, whether it fits, pull it --------------------------------------
        self.detail = QLabel("Select a model size to see whether it fits, then pull it.")
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.RichText)
        self.detail.setToolTip(TIGHT_MEANS)
        self.check_button = QPushButton("Check fit")
        self.check_button.setToolTip("Ask the server: it reads the model's header, not the whole file")
        self.check_button.clicked.connect(lambda: self.check_fit(self.selected_pull_name()))
        self.pull_button = QPushButton("Pull")
        self.pull_button.clicked.connect(self.pull_selected)
        actions = QHBoxLayout()
        actions.addWidget(self.detail, 1)
        actions.addWidget(self.check_button)
        actions.addWidget(self.pull_button)

        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(filters)
        layout.addWidget(self.tabs, 1)
        layout.addLayout(actions)
        layout.addWidget(self.status)

        self.hf.found.connect(self._hf_found)
        self.hf.listed.connect(self._hf_listed)
        self.hf.failed.connect(self._hf_failed)
        self.pulls.changed.connect(self._pull_changed)
        self.pulls.finished.connect(lambda model: self._mark_local(model))
        self.refilter()
        self._update_buttons()

    @staticmethod
    def _tree(columns: tuple[str, ...]) -> QTreeWidget:
        tree = QTreeWidget()
        tree.setColumnCount(len(columns))
        tree.setHeaderLabels(list(columns))
        tree.setUniformRowHeights(True)
        tree.setAlternatingRowColors(True)
        header = tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(columns)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        tree.headerItem().setToolTip(FIT_COL, TIGHT_MEANS)
        return tree

    # -- shown ---------------------------------------------------------------------------------
    def activated(self) -> None:
        """Shown as a page: free memory and the local models may have changed since."""
        self.refresh()
        self.search_box.setFocus()

    def refresh(self) -> None:
        devices = self.client.devices()
        devices.succeeded.connect(lambda body: self._got_devices(Devices.from_json(body)))
        devices.failed.connect(lambda e: self._failed("Cannot read this machine's memory", e))
        tags = self.client.tags()
        tags.succeeded.connect(self._got_tags)

    def _got_devices(self, devices: Devices) -> None:
        if devices.gpus:
            self.free_memory = sum(d.free_memory for d in devices.gpus)
            self.free_where = "VRAM"
        else:
            self.free_memory = devices.system_free
            self.free_where = "RAM"
        for name in self.rows.names():
            if not self._estimated(name):
                self.rows.set_fit(name, from_size(self.rows.size_of(name), self.free_memory, self.free_where))
        if self.fits_only.isChecked():
            self.refilter()
        self.devices_loaded.emit(self.free_memory)

    def _got_tags(self, body: Any) -> None:
        self.local = {m.name for m in parse_tags(body)}
        for name in self.rows.names():
            if name in self.local and self.pulls.jobs.get(name) is None:
                self.rows.set_state(name, "Downloaded")

    # -- the catalog ---------------------------------------------------------------------------
    def current_filter(self) -> CatalogFilter:
        caps = frozenset(c for c, box in self.cap_boxes.items() if box.isChecked())
        limit = self.free_memory if self.fits_only.isChecked() and self.free_memory > 0 else None
        return CatalogFilter(self.search_box.text(), caps, limit)

    def refilter(self) -> None:
        flt = self.current_filter()
        rows = filter_catalog(self.catalog.models, flt)
        selected = self.selected_pull_name()
        tree = self.catalog_tree
        tree.blockSignals(True)
        for top in top_items(tree):
            for child in children(top):
                self.rows.forget(child)
        tree.clear()
        for row in rows:
            self._add_catalog_row(row)
        tree.blockSignals(False)
        if len(rows) <= 3:
            tree.expandAll()
        elif first := tree.topLevelItem(0):
            first.setExpanded(True)  # so it shows at once that a model opens into its sizes
        if selected:
            self._select_in(tree, selected)
        self._refilter_hf(flt)
        self.catalog_shown.emit(len(rows))

    def _add_catalog_row(self, row: CatalogRow) -> None:
        model = row.model
        top = QTreeWidgetItem(self.catalog_tree)
        caps = ", ".join(model.capabilities)
        top.setText(0, model.name + (f"  ·  {caps}" if caps else ""))
        sizes = [t.size for t in row.tags]
        low, high = human_size(min(sizes)), human_size(max(sizes))
        top.setText(1, low if low == high else f"{low} – {high}")
        context = f" Context: {model.context_length:,} tokens." if model.context_length else ""
        top.setToolTip(0, f"{model.description}{context}")
        top.setFirstColumnSpanned(False)
        for tag in row.tags:
            child = QTreeWidgetItem(top)
            name = model.pull_name(tag.tag)
            child.setText(0, name + ("  (default)" if tag.tag == model.default_tag else ""))
            child.setToolTip(0, model.description)
            self._about[name] = model.description + context
            self._add_downloadable(child, Downloadable(name, tag.size))

    def _add_downloadable(self, item: QTreeWidgetItem, what: Downloadable) -> None:
        self.rows.add(item, what)
        if what.pull_name not in self.rows.fits and self.free_memory:
            self.rows.set_fit(what.pull_name, from_size(what.size, self.free_memory, self.free_where))
        job = self.pulls.jobs.get(what.pull_name)
        if job is not None:
            self.rows.set_job(job)
        elif what.pull_name in self.local:
            self.rows.set_state(what.pull_name, "Downloaded")

    def visible_catalog(self) -> list[tuple[str, list[str]]]:
        """What the list shows: (model, [pull names]) in order, read from the widget."""
        out = []
        for top in top_items(self.catalog_tree):
            names = [str(child.data(0, PULL_ROLE)) for child in children(top)]
            out.append((top.text(0).split("  ·  ")[0], names))
        return out

    # -- Hugging Face --------------------------------------------------------------------------
    def _enter(self) -> None:
        text = self.search_box.text().strip()
        if text:
            self.search_hf(text)

    def search_hf(self, query: str) -> int:
        query = query.strip()
        self.hf_note.setText(f"Searching Hugging Face for “{query}”…" if query else "Searching Hugging Face…")
        self._hf_search_seq = self.hf.search(query)
        return self._hf_search_seq

    def _hf_found(self, seq: int, query: str, repos: list[HfRepo]) -> None:
        if seq != self._hf_search_seq:
            return  # a newer search is on its way
        self.hf_repos.clear()
        for repo in repos:
            item = QListWidgetItem(repo.id)
            item.setData(REPO_ROLE, repo.id)
            item.setToolTip(f"{repo.downloads:,} downloads, {repo.likes:,} likes; updated {repo.updated or '?'}")
            self.hf_repos.addItem(item)
        self.hf_note.setText(
            f"{len(repos)} GGUF repositories for “{query}”. Pick one to see its files."
            if repos
            else f"No GGUF repository on Hugging Face matches “{query}”."
        )
        self.hf_results_shown.emit([r.id for r in repos])

    def hf_repo_ids(self) -> list[str]:
        return [str(self.hf_repos.item(i).data(REPO_ROLE)) for i in range(self.hf_repos.count())]

    def select_hf_repo(self, repo_id: str) -> bool:
        for i in range(self.hf_repos.count()):
            if self.hf_repos.item(i).data(REPO_ROLE) == repo_id:
                self.hf_repos.setCurrentRow(i)
                return True
        return False

    def _repo_picked(self, item: QListWidgetItem | None) -> None:
        if item is None:
            return
        repo_id = str(item.data(REPO_ROLE))
        self._hf_repo = repo_id
        self._clear_hf_files()
        self.hf_note.setText(f"Listing the files of {repo_id}…")
        self._hf_files_seq = self.hf.files(repo_id)

    def _clear_hf_files(self) -> None:
        for item in top_items(self.hf_files):
            self.rows.forget(item)
        self.hf_files.clear()

    def _hf_listed(self, seq: int, repo_id: str, models: RepoModels) -> None:
        if seq != self._hf_files_seq:
            return
        self._hf_models = models
        self._show_hf_files(self.current_filter())
        self.hf_files_shown.emit(repo_id)

    def _refilter_hf(self, flt: CatalogFilter) -> None:
        if self._hf_repo and self._hf_models.choices:
            self._show_hf_files(flt)

    def _show_hf_files(self, flt: CatalogFilter) -> None:
        models, repo_id = self._hf_models, self._hf_repo
        selected = self.selected_pull_name()
        self.hf_files.blockSignals(True)
        self._clear_hf_files()
        projector = models.projector_size
        shown = 0
        for choice in models.choices:
            size = choice.size + projector
            if flt.max_size is not None and size > flt.max_size:
                continue
            item = QTreeWidgetItem(self.hf_files)
            parts = f"  ({choice.parts} parts)" if choice.parts > 1 else ""
            item.setText(0, choice.quant + parts)
            item.setToolTip(0, "\n".join(choice.files))
            self._about[choice.pull_name(repo_id)] = "Files: " + ", ".join(choice.files) + "."
            self._add_downloadable(item, Downloadable(choice.pull_name(repo_id), size))
            shown += 1
        self.hf_files.blockSignals(False)
        if selected:
            self._select_in(self.hf_files, selected)
        if not models.choices:
            self.hf_note.setText(f"{repo_id} has no GGUF model files.")
        else:
            note = f"{shown} of {len(models.choices)} quantizations of {repo_id}."
            if models.projectors:
                note += (
                    f" Its vision projector ({models.projectors[0].path}, {human_size(projector)})"
                    " comes with every pull and is counted in the sizes."
                )
            self.hf_note.setText(note)

    def hf_rows(self) -> list[tuple[str, str, str, str]]:
        """What the file list shows: (quantization, size, fit, download state) per row."""
        out = []
        for item in top_items(self.hf_files):
            out.append((item.text(0), item.text(1), item.text(FIT_COL), item.text(STATUS_COL)))
        return out

    def _hf_failed(self, seq: int, message: str) -> None:
        if seq in (self._hf_search_seq, self._hf_files_seq):
            self.hf_note.setText(f"Hugging Face: {message}")
            self.status.error(f"Hugging Face: {message}")

    # -- choosing, fitting, pulling --------------------------------------------------------------
    def _current_item(self) -> QTreeWidgetItem | None:
        tree = self.catalog_tree if self.tabs.currentIndex() == 0 else self.hf_files
        return tree.currentItem()

    def selected_pull_name(self) -> str:
        item = self._current_item()
        name = item.data(0, PULL_ROLE) if item is not None else None
        return str(name) if name else ""

    def select(self, pull_name: str) -> bool:
        """Select the row that pulls `pull_name` (in the list in front, else in the other)."""
        for index, tree in ((0, self.catalog_tree), (1, self.hf_files)):
            if self._select_in(tree, pull_name):
                self.tabs.setCurrentIndex(index)
                self._picked(tree.currentItem())
                return True
        return False

    @staticmethod
    def _select_in(tree: QTreeWidget, pull_name: str) -> bool:
        stack = top_items(tree)
        while stack:
            item = stack.pop(0)
            if item.data(0, PULL_ROLE) == pull_name:
                tree.setCurrentItem(item)
                return True
            stack.extend(children(item))
        return False

    def _picked(self, item: QTreeWidgetItem | None) -> None:
        self._update_buttons()
        name = item.data(0, PULL_ROLE) if item is not None else None
        if not name:
            self.detail.setText("Select a model size to see whether it fits, then pull it.")
            return
        self._show_detail(str(name))
        self.check_fit(str(name))

    def _show_detail(self, name: str) -> None:
        view = self.rows.fits.get(name)
        size = human_size(self.rows.size_of(name))
        verdict = f" — <b>{view.label}</b>" if view is not None else ""
        about = html.escape(self._about.get(name, ""))
        self.detail.setText(f"<b>{html.escape(name)}</b>: {size} to download{verdict}<br>{about}")
        self.detail.setToolTip(view.tooltip if view is not None else TIGHT_MEANS)

    def context_length(self) -> int:
        return int(self.context_combo.currentData() or 0)

    def _estimated(self, name: str) -> bool:
        return (name, self.context_length()) in self._estimates

    def _context_changed(self) -> None:
        for name in self.rows.names():
            view = self._estimates.get((name, self.context_length()))
            if view is None:
                view = from_size(self.rows.size_of(name), self.free_memory, self.free_where)
            self.rows.set_fit(name, view)
        name = self.selected_pull_name()
        if name:
            self._show_detail(name)
            self.check_fit(name)

    def check_fit(self, name: str) -> None:
        """Ask the server for `name`'s estimate at the chosen context (once per name and context)."""
        ctx = self.context_length()
        key = (name, ctx)
        if not name or key in self._estimating:
            return
        if key in self._estimates:
            self.rows.set_fit(name, self._estimates[key])
            self.estimate_shown.emit(name, self._estimates[key])
            return
        self._estimating.add(key)
        self.status.busy(f"Reading the header of {name} to estimate its memory…")
        call = self.client.estimate(name, options={"num_ctx": ctx} if ctx else None)
        call.succeeded.connect(lambda body, k=key: self._got_estimate(k, Estimate.from_json(body)))
        call.failed.connect(lambda e, k=key: self._estimate_failed(k, e))

    def _got_estimate(self, key: tuple[str, int], est: Estimate) -> None:
        self._estimating.discard(key)
        view = from_estimate(est)
        self._estimates[key] = view
        name = key[0]
        if key[1] == self.context_length():
            self.rows.set_fit(name, view)
            if self.selected_pull_name() == name:
                self._show_detail(name)
        self.status.ok(f"{name}: needs {human_size(est.total)} of {human_size(est.free_memory)} free.")
        self.estimate_shown.emit(name, view)

    def _estimate_failed(self, key: tuple[str, int], error: ApiError) -> None:
        self._estimating.discard(key)
        if error.network == "cancelled":
            return
        self._failed(f"Cannot estimate {key[0]}", error)

    def pull_selected(self) -> None:
        name = self.selected_pull_name()
        if name:
            self.pull(name)

    def pull(self, name: str) -> None:
        self.pulls.start(name)
        self.status.ok(f"Pulling {name}; the Downloads page shows its progress too.")

    def _pull_changed(self, model: str) -> None:
        job = self.pulls.jobs.get(model)
        if job is not None:
            self.rows.set_job(job)
        elif model in self.local:
            self.rows.set_state(model, "Downloaded")
        else:
            self.rows.set_state(model, "")
        self._update_buttons()

    def _mark_local(self, model: str) -> None:
        self.local.add(model)

    def _update_buttons(self) -> None:
        name = self.selected_pull_name()
        job = self.pulls.jobs.get(name) if name else None
        running = job is not None and job.status is PullStatus.RUNNING
        self.pull_button.setEnabled(bool(name) and not running)
        self.pull_button.setText("Pull again" if name in self.local else "Pull")
        self.check_button.setEnabled(bool(name))

    def _failed(self, what: str, error: ApiError) -> None:
        if error.network != "cancelled":
            self.status.error(f"{what}: {friendly(error)}")
