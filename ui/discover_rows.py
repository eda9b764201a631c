"""The Discover page's downloadable rows: one per pull name, each with its fit verdict and download state.

The same model can show in more than one place (a catalog tag, a Hugging Face
quantization), and its verdict and download state change from outside (an
estimate arrives, a pull advances in the pull manager), so rows are kept
here by pull name and updated in one place, whichever list they sit in.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeWidgetItem

from ui.discover_fit import Fit, FitView
from ui.format import human_size
from ui.pull_manager import PullJob, PullStatus
from ui.theme import Tone, tone_color

#: Columns of a downloadable row (catalog tag or Hugging Face file) in both lists.
SIZE_COL, FIT_COL, STATUS_COL = 1, 2, 3
#: Item data: the pull name of a downloadable row (absent on a catalog model's heading row).
PULL_ROLE = Qt.ItemDataRole.UserRole + 10
_TONES = {Fit.FITS: Tone.OK, Fit.TIGHT: Tone.WARNING, Fit.NO: Tone.ERROR}


@dataclass(frozen=True)
class Downloadable:
    """What a row offers: the name `/api/pull` takes, and its download size (projectors included)."""

    pull_name: str
    size: int


class RowBook:
    def __init__(self) -> None:
        self._items: dict[str, list[QTreeWidgetItem]] = {}
        self._sizes: dict[str, int] = {}
        self.fits: dict[str, FitView] = {}
        self.states: dict[str, tuple[str, str]] = {}  # pull name → (text, tooltip)

    def add(self, item: QTreeWidgetItem, what: Downloadable) -> None:
        item.setData(0, PULL_ROLE, what.pull_name)
        item.setText(SIZE_COL, human_size(what.size))
        item.setTextAlignment(SIZE_COL, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._items.setdefault(what.pull_name, []).append(item)
        self._sizes[what.pull_name] = what.size
        self._paint(what.pull_name, [item])

    def forget(self, item: QTreeWidgetItem) -> None:
        name = item.data(0, PULL_ROLE)
        if name in self._items:
            self._items[name] = [i for i in self._items[name] if i is not item]

    def size_of(self, pull_name: str) -> int:
        return self._sizes.get(pull_name, 0)

    def names(self) -> list[str]:
        return [n for n, items in self._items.items() if items]

    def set_fit(self, pull_name: str, view: FitView) -> None:
        self.fits[pull_name] = view
        self._paint(pull_name)

    def set_state(self, pull_name: str, text: str, tooltip: str = "") -> None:
        self.states[pull_name] = (text, tooltip)
        self._paint(pull_name)

    def set_job(self, job: PullJob) -> None:
        if job.status is PullStatus.RUNNING:
            fraction = job.tracker.fraction
            self.set_state(job.model, f"{fraction * 100:.0f} %" if job.tracker.total else "Starting…")
        elif job.status is PullStatus.SUCCEEDED:
            self.set_state(job.model, "Downloaded")
        elif job.status is PullStatus.FAILED:
            self.set_state(job.model, "Failed", job.error)
        else:
            self.set_state(job.model, "")

    def _paint(self, pull_name: str, items: list[QTreeWidgetItem] | None = None) -> None:
        fit = self.fits.get(pull_name)
        text, tip = self.states.get(pull_name, ("", ""))
        for item in items if items is not None else self._items.get(pull_name, []):
            if fit is not None:
                item.setText(FIT_COL, fit.label)
                item.setToolTip(FIT_COL, fit.tooltip)
                tone = _TONES.get(fit.fit)
                palette = item.treeWidget().palette() if item.treeWidget() else None
                if tone is not None and palette is not None:
                    item.setForeground(FIT_COL, tone_color(tone, palette))
            item.setText(STATUS_COL, text)
            item.setToolTip(STATUS_COL, tip)
