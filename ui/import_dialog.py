"""Import GGUF files already on disk: find them, show what each is and the name it gets, say what it costs, import.

The scan (`ui/gguf_scan.py`) and the import (`ui/gguf_import.py`) run off the
GUI thread with a progress bar and Cancel. Every file found is a row: a tick,
the model name (editable; checked against the store's naming rules, and
flagged when a model of that name exists or another row has it), the file,
where it was found, architecture, parameters, quantization, size, and the
disk the store will take for it (none for a hard link, the file's size for a
copy). A file that cannot be imported on its own is listed unticked with the
reason. The same dialog takes dropped files instead of a scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.api_types import parse_tags
from ui.background import Job
from ui.client import ApiClient, Call
from ui.errors import ApiError, friendly
from ui.format import human_size
from ui.gguf_import import BlobImporter, ImportItem, ItemResult, import_files
from ui.gguf_scan import Found, Source, describe, scan
from ui.model_names import canonical, name_problem, unique
from ui.prompter import Prompter
from ui.status_line import StatusLine
from ui.theme import Tone, ToneLabel, tone_color

COLUMNS = ("Name", "File", "Architecture", "Parameters", "Quantization", "Size", "Disk use", "Note", "Found in")
NAME, FILE, ARCH, PARAMS, QUANT, SIZE, DISK, NOTE, WHERE = range(len(COLUMNS))


@dataclass(frozen=True)
class Candidate:
    """A file found, with what importing it costs (worked out in the scan, off the GUI thread)."""

    found: Found
    disk: int
    how: str  # "hard link", "copy"


def _describe_all(found: list[Found], importer: BlobImporter) -> list[Candidate]:
    out = []
    for f in found:
        disk, how = importer.disk_use(f.real_path) if f.importable else (0, "")
        out.append(Candidate(f, disk, how))
    return out


class ImportDialog(QDialog):
    scanned = Signal(list)  # list[Candidate]
    imported = Signal(list)  # list[ItemResult], when an import ended (also cancelled, also with failures)

    def __init__(
        self,
        client: ApiClient,
        importer: BlobImporter,
        *,
        sources: list[Source] | None = None,
        paths: list[Path] | None = None,
        prompter: Prompter | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.client, self.importer = client, importer
        self.sources = sources
        self.paths = list(paths or [])
        self.prompter = prompter or Prompter()
        self.candidates: list[Candidate] = []
        self.existing: set[str] = set()
        self.results: list[ItemResult] = []
        self.job: Job | None = None
        self.setWindowTitle("Import GGUF models")
        self.resize(980, 520)

        self.heading = QLabel()
        self.heading.setWordWrap(True)
        self.heading.setTextFormat(Qt.TextFormat.RichText)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemChanged.connect(self._item_changed)
        self.summary = ToneLabel("", Tone.MUTED)
        self.summary.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = StatusLine()

        self.rescan_button = QPushButton("Scan again")
        self.add_button = QPushButton("Add a file…")
        self.import_button = QPushButton("Import")
        self.import_button.setDefault(True)
        self.cancel_button = QPushButton("Close")
        self.rescan_button.clicked.connect(self.start_scan)
        self.add_button.clicked.connect(self.ask_file)
        self.import_button.clicked.connect(self.start_import)
        self.cancel_button.clicked.connect(self.cancel_or_close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.rescan_button)
        buttons.addWidget(self.add_button)
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self._set_heading()
        self._update_buttons()

    # -- what is there --------------------------------------------------------------------
    def _set_heading(self) -> None:
        if self.sources is None:
            self.heading.setText("<b>Import these files as models.</b>")
            return
        labels = list(dict.fromkeys(s.label for s in self.sources))
        self.heading.setText(f"<b>GGUF files already on this computer.</b> Looked in: {', '.join(labels)}.")
        self.heading.setToolTip("\n".join(f"{s.label}: {_home_short(s.folder)}" for s in self.sources))

    def begin(self) -> None:
        """Look for files (the app calls this once the dialog is shown)."""
        self.start_scan()

    def start_scan(self) -> Call | None:
        """Ask the server which names are taken, then read the files: proposals avoid those names."""
        if self.job is not None and self.job.running:
            return None
        self.status.busy("Looking for GGUF files…")
        call = self.client.tags()

        def got(body: Any) -> None:
            self.existing = {canonical(m.name) for m in parse_tags(body)}
            self._scan()

        def failed(error: ApiError) -> None:
            self.status.error(f"Cannot list the models there are: {friendly(error)}")
            self._scan()

        call.succeeded.connect(got)
        call.failed.connect(failed)
        return call

    def _scan(self) -> Job:
        sources, paths, importer = self.sources, list(self.paths), self.importer

        def work(report: Any, cancelled: Any) -> list[Candidate]:
            found = scan(sources, cancelled=cancelled, progress=report) if sources is not None else []
            for path in paths:
                report(f"Reading {path.name}…")
                found.append(describe(path))
            return _describe_all(found, importer)

        self.progress.setRange(0, 0)  # busy: how many files there are is not known before the walk ends
        return self._run(work, self._scanned)

    def _scanned(self, candidates: list[Candidate]) -> None:
        self.results = []  # a new list: what the last import said belongs to the old rows
        taken: set[str] = set()  # two files proposing one name: the second gets `-2`; an existing name is flagged
        self.candidates = candidates
        self.table.blockSignals(True)
        self.table.setRowCount(len(candidates))
        for row, c in enumerate(candidates):
            f, s = c.found, c.found.summary
            name = f.proposed
            if f.importable:  # a skipped file takes no name from an importable one
                name = unique(f.proposed, taken)
                taken.add(canonical(name))
            name_item = QTableWidgetItem(name)
            flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsUserCheckable
            if f.importable:
                flags |= Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsEditable
            name_item.setFlags(flags)
            checked = f.importable and canonical(name) not in self.existing
            name_item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            cells = [QTableWidgetItem("") for _ in COLUMNS]
            cells[NAME] = name_item
            for col, text in (
                (FILE, f.path.name),
                (ARCH, s.architecture if s else ""),
                (PARAMS, s.parameter_label if s and s.parameters else ""),
                (QUANT, s.file_type if s else ""),
                (SIZE, human_size(f.size)),
                (DISK, _disk_text(c) if f.importable else ""),
                (WHERE, f.source + (f" · {f.repo}" if f.repo else "")),
            ):
                cells[col].setText(text)
            cells[FILE].setToolTip(str(f.path) if f.path == f.real_path else f"{f.path}\n→ {f.real_path}")
            cells[DISK].setToolTip(_disk_tip(c))
            for col, item in enumerate(cells):
                if col != NAME:
                    item.setFlags(Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled)
                self.table.setItem(row, col, item)
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(NAME, max(200, self.table.columnWidth(NAME) + 24))  # room to edit
        self.table.setColumnWidth(NOTE, 320)  # notes are written after this; each is also its tooltip
        importable = sum(c.found.importable for c in candidates)
        if not candidates:
            self.status.busy("No GGUF files were found there. Drop one on the window, or add one here.")
        else:
            skipped = len(candidates) - importable
            self.status.busy(
                f"Found {len(candidates)} GGUF file{'s' if len(candidates) != 1 else ''}"
                + (f"; {skipped} cannot be imported on its own (see Note)." if skipped else ".")
            )
        self._refresh_notes()
        self.scanned.emit(candidates)

    def ask_file(self) -> None:
        path = self.prompter.open_file(self, "Choose a GGUF file", "GGUF models (*.gguf)")
        if path is not None:
            self.add_paths([path])

    def add_paths(self, paths: list[Path]) -> None:
        """Files to import besides (or instead of) what the scan finds; read again with the rest."""
        self.paths.extend(p for p in paths if p not in self.paths)
        self.start_scan()

    # -- names and what is ticked ---------------------------------------------------------
    def _cell(self, row: int, col: int) -> QTableWidgetItem:
        item = self.table.item(row, col)
        assert item is not None, "every cell is set when the rows are made"
        return item

    def names(self) -> list[str]:
        return [self._cell(r, NAME).text().strip() for r in range(self.table.rowCount())]

    def checked_rows(self) -> list[int]:
        return [r for r in range(self.table.rowCount()) if self._cell(r, NAME).checkState() == Qt.CheckState.Checked]

    def set_checked(self, row: int, checked: bool) -> None:
        self._cell(row, NAME).setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)

    def set_name(self, row: int, name: str) -> None:
        self._cell(row, NAME).setText(name)

    def row_problem(self, row: int) -> str:
        """Why a ticked row cannot be imported as it is, "" when it can."""
        c = self.candidates[row]
        if not c.found.importable:
            return c.found.skip
        name = self._cell(row, NAME).text().strip()
        problem = name_problem(name)
        if problem:
            return problem[0].upper() + problem[1:]
        others = [canonical(self.names()[r]) for r in self.checked_rows() if r != row]
        if canonical(name) in others:
            return "Another file here has this name"
        return ""

    def note(self, row: int) -> str:
        return self._cell(row, NOTE).text()

    def _item_changed(self, item: QTableWidgetItem) -> None:
        if item.column() == NAME:
            self._refresh_notes()

    def _refresh_notes(self) -> None:
        self.table.blockSignals(True)
        checked = set(self.checked_rows())
        for row, c in enumerate(self.candidates):
            problem = self.row_problem(row)
            name = self._cell(row, NAME).text().strip()
            if not c.found.importable:
                text, tone = f"Skipped: {c.found.skip}", Tone.MUTED
            elif problem:
                text, tone = problem, Tone.ERROR if row in checked else Tone.MUTED
            elif canonical(name) in self.existing:
                text, tone = (
                    "A model of this name exists; importing replaces it. Rename it, or tick to replace.",
                    Tone.WARNING,
                )
            else:
                text, tone = "", Tone.PLAIN
            done = next((r for r in self.results if r.item.path == c.found.real_path), None)
            if done is not None:
                text, tone = (
                    (f"Imported ({done.imported.how})" if done.ok and done.imported else done.error),
                    (Tone.OK if done.ok else Tone.ERROR),
                )
            item = self._cell(row, NOTE)
            item.setText(text)
            item.setToolTip(text)
            item.setForeground(tone_color(tone, self.palette()))
        self.table.blockSignals(False)
        self._update_summary()
        self._update_buttons()

    def _update_summary(self) -> None:
        rows = self.checked_rows()
        if not rows:
            self.summary.setText("Tick the files to import.")
            return
        size = sum(self.candidates[r].found.size for r in rows)
        disk = sum(self.candidates[r].disk for r in rows)
        linked = sum(self.candidates[r].how == "hard link" for r in rows)
        text = f"{len(rows)} file{'s' if len(rows) != 1 else ''}, {human_size(size)}. "
        text += f"Importing takes {human_size(disk)} more disk"
        if linked == len(rows):
            text += ": the files are hard-linked into the store, not copied."
        elif linked:
            text += f": {linked} hard-linked (no copy), {len(rows) - linked} copied into the store."
        else:
            text += ": a copy of each file goes into the store (the originals can be deleted after)."
        self.summary.setText(text)

    def _update_buttons(self) -> None:
        busy = self.job is not None and self.job.running
        rows = self.checked_rows()
        ok = bool(rows) and not any(self.row_problem(r) for r in rows)
        self.import_button.setEnabled(ok and not busy)
        self.import_button.setText(f"Import {len(rows)}" if rows else "Import")
        self.rescan_button.setEnabled(not busy)
        self.add_button.setEnabled(not busy)
        self.cancel_button.setText("Cancel" if busy else "Close")

    # -- import ---------------------------------------------------------------------------
    def items(self) -> list[ImportItem]:
        return [
            ImportItem(self.candidates[r].found.real_path, self.names()[r], self.candidates[r].found.path.name)
            for r in self.checked_rows()
        ]

    def start_import(self) -> Job | None:
        if (self.job is not None and self.job.running) or not self.import_button.isEnabled():
            return None
        items, importer, base_url, api_key = self.items(), self.importer, self.client.base_url, self.client.api_key
        total = len(items)

        def work(report: Any, cancelled: Any) -> list[ItemResult]:
            def progress(index: int, done: int, size: int, text: str) -> None:
                report((index, done, size, text))

            return import_files(items, importer, base_url, progress, cancelled, api_key=api_key)

        self.results = []
        self.progress.setRange(0, 1000)
        self.status.busy(f"Importing {total} file{'s' if total != 1 else ''}…")
        self._total = total
        return self._run(work, self._imported)

    def _imported(self, results: list[ItemResult]) -> None:
        self.results = results
        made = [r.item.name for r in results if r.ok]
        failed = [r for r in results if not r.ok]
        left = self._total - len(results)
        parts = []
        if made:
            parts.append(f"Imported {', '.join(made)}.")
        if failed:
            parts.append(f"{len(failed)} failed (see Note).")
        if left and self.job is not None and self.job.cancelled:
            parts.append(f"Cancelled: {left} not imported.")
        text = " ".join(parts) or "Nothing was imported."
        if failed or not made:
            self.status.error(text)
        else:
            self.status.ok(text)
        self._refresh_notes()
        self.imported.emit(results)

    # -- running work ---------------------------------------------------------------------
    def _run(self, work: Any, then: Any) -> Job:
        job = Job(work, self)
        self.job = job
        job.progress.connect(self._progress)
        job.done.connect(then)
        job.failed.connect(lambda text: self.status.error(text))
        job.ended.connect(self._job_ended)
        self.progress.setVisible(True)
        job.start()
        self._update_buttons()
        return job

    def _progress(self, report: object) -> None:
        if isinstance(report, str):
            self.status.busy(report)
            return
        if isinstance(report, tuple):
            index, done, size, text = report
            fraction = (index + (done / size if size else 1)) / max(1, self._total)
            self.progress.setValue(int(fraction * 1000))
            self.status.busy(f"{index + 1} of {self._total}: {text}…")

    def _job_ended(self) -> None:
        self.progress.setVisible(False)
        self._update_buttons()

    def cancel_or_close(self) -> None:
        if self.job is not None and self.job.running:
            self.job.cancel()
            self.status.busy("Cancelling…")
        else:
            self.close()

    def reject(self) -> None:  # Escape: cancel what runs, and close
        if self.job is not None and self.job.running:
            self.job.cancel()
        super().reject()


def _home_short(path: Path) -> str:
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def _disk_text(c: Candidate) -> str:
    return "none (hard link)" if c.how == "hard link" else f"{human_size(c.disk)} ({c.how})"


def _disk_tip(c: Candidate) -> str:
    if c.how == "hard link":
        return (
            "The file is on the store's disk: it is hard-linked into the store, so it takes no more room."
            " Its group and others lose write permission, as the store's files have none."
        )
    if c.how == "copy":
        return "The store gets its own copy of the file; the original can be deleted afterwards."
    return ""
