"""Running models: memory per model (the VRAM part as a bar), context, time until unload, Unload.

Below, the devices with their free and total memory (pollama's
`/api/pollama/devices`; Ollama has no such endpoint), and a "will it fit"
estimate for a model before loading it (`/api/pollama/estimate`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ui.api_types import Devices, Estimate, RunningModel, parse_tags
from ui.client import ApiClient, Call
from ui.errors import ApiError, friendly
from ui.format import gpu_share, human_duration, human_size
from ui.monitor import ServerMonitor
from ui.status_line import StatusLine

COLUMNS = ("Model", "Size", "In VRAM", "Context", "Unloads in", "")


def vram_bar(model: RunningModel, vram_total: int) -> QProgressBar:
    """The model's VRAM share against the devices' total; 'CPU only' when nothing is on a GPU."""
    bar = QProgressBar()
    bar.setTextVisible(True)
    if vram_total <= 0 or model.size_vram <= 0:
        bar.setRange(0, 1)
        bar.setValue(0)
        bar.setFormat("CPU only" if model.size_vram <= 0 else human_size(model.size_vram))
        return bar
    bar.setRange(0, 1000)
    bar.setValue(int(min(1.0, model.size_vram / vram_total) * 1000))
    bar.setFormat(
        f"{human_size(model.size_vram)} of {human_size(vram_total)} ({gpu_share(model.size, model.size_vram)})"
    )
    return bar


def memory_bar(used: int, total: int) -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setValue(int(used / total * 1000) if total else 0)
    bar.setFormat(f"{human_size(total - used)} free of {human_size(total)}")
    return bar


class RunningWindow(QWidget):
    refreshed = Signal(list)  # list[RunningModel]
    devices_refreshed = Signal(object)  # Devices
    estimated = Signal(object)  # Estimate
    unloaded = Signal(str)

    def __init__(self, client: ApiClient, monitor: ServerMonitor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.client = client
        self.monitor = monitor
        self.models: list[RunningModel] = []
        self.devices = Devices()
        self.setWindowTitle("pollama — Running models")
        self.resize(900, 560)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.empty_label = QLabel("No model is loaded. A model loads when an app sends it a request.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.devices_box = QGroupBox("Devices")
        self.devices_layout = QVBoxLayout(self.devices_box)

        self.estimate_box = QGroupBox("Will it fit?")
        self.model_combo = QComboBox()
        self.model_combo.setMinimumWidth(240)
        self.estimate_button = QPushButton("Estimate")
        self.estimate_button.clicked.connect(lambda: self.estimate(self.model_combo.currentText()))
        self.estimate_label = QLabel("Pick a model to see how much memory it needs before loading it.")
        self.estimate_label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.model_combo, 1)
        row.addWidget(self.estimate_button)
        est_layout = QVBoxLayout(self.estimate_box)
        est_layout.addLayout(row)
        est_layout.addWidget(self.estimate_label)

        self.status = StatusLine()
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.empty_label)
        bottom = QHBoxLayout()
        bottom.addWidget(self.devices_box, 1)
        bottom.addWidget(self.estimate_box, 1)
        layout.addLayout(bottom)
        layout.addWidget(self.status)

        self.monitor.running_changed.connect(self.set_models)
        self._countdown = QTimer(self)
        self._countdown.setInterval(1000)
        self._countdown.timeout.connect(self._tick)
        self._poll = QTimer(self)
        self._poll.setInterval(2000)
        self._poll.timeout.connect(self.monitor.refresh)
        self.set_models(self.monitor.running)

    def activated(self) -> None:
        """Shown as a page; polling follows visibility (below), so nothing more to do."""

    # -- visibility drives polling: an unseen window costs nothing ------------------------------
    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh()
        self._countdown.start()
        self._poll.start()

    def hideEvent(self, event: Any) -> None:
        super().hideEvent(event)
        self._countdown.stop()
        self._poll.stop()

    def refresh(self) -> None:
        self.monitor.refresh()
        self.refresh_devices()
        self.refresh_model_choices()

    def refresh_devices(self) -> Call:
        call = self.client.devices()
        call.succeeded.connect(lambda body: self.set_devices(Devices.from_json(body)))
        call.failed.connect(self._devices_failed)
        return call

    def refresh_model_choices(self) -> Call:
        call = self.client.tags()
        call.succeeded.connect(self._got_tags)
        return call

    def _got_tags(self, body: Any) -> None:
        current = self.model_combo.currentText()
        names = [m.name for m in parse_tags(body)]
        self.model_combo.clear()
        self.model_combo.addItems(names)
        if current in names:
            self.model_combo.setCurrentText(current)

    # -- running models --------------------------------------------------------------------
    def set_models(self, models: list[RunningModel]) -> None:
        self.models = list(models)
        self.table.setRowCount(len(models))
        for row, m in enumerate(models):
            self.table.setItem(row, 0, QTableWidgetItem(m.name))
            size = QTableWidgetItem(human_size(m.size))
            size.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, 1, size)
            self.table.setCellWidget(row, 2, vram_bar(m, self.devices.vram_total))
            self.table.setItem(row, 3, QTableWidgetItem(f"{m.context_length:,} tokens" if m.context_length else ""))
            self.table.setItem(row, 4, QTableWidgetItem(human_duration(m.seconds_left())))
            button = QPushButton("Unload")
            button.clicked.connect(lambda _=False, name=m.name: self.unload(name))
            self.table.setCellWidget(row, 5, button)
        self.table.setVisible(bool(models))
        self.empty_label.setVisible(not models)
        self.refreshed.emit(self.models)

    def _tick(self) -> None:
        now = dt.datetime.now(dt.UTC)
        for row, m in enumerate(self.models):
            item = self.table.item(row, 4)
            if item is not None:
                item.setText(human_duration(m.seconds_left(now)))

    def unload(self, name: str) -> Call:
        self.status.busy(f"Unloading {name}…")
        call = self.client.unload(name)

        def done(_: Any) -> None:
            self.status.ok(f"Unloaded {name}.")
            self.monitor.refresh()
            self.unloaded.emit(name)

        call.succeeded.connect(done)
        call.failed.connect(lambda e: self.status.error(friendly(e)))
        return call

    # -- devices ---------------------------------------------------------------------------
    def set_devices(self, devices: Devices) -> None:
        self.devices = devices
        while self.devices_layout.count():
            item = self.devices_layout.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget:
                widget.deleteLater()
        for d in devices.gpus:
            self.devices_layout.addWidget(QLabel(f"{d.name} ({d.kind.upper() or 'GPU'})"))
            self.devices_layout.addWidget(memory_bar(d.used_memory, d.total_memory))
        if not devices.gpus:
            self.devices_layout.addWidget(QLabel("No GPU found: models run on the CPU."))
        if devices.system_total:
            self.devices_layout.addWidget(QLabel("System memory"))
            self.devices_layout.addWidget(memory_bar(devices.system_total - devices.system_free, devices.system_total))
        self.set_models(self.models)
        self.devices_refreshed.emit(devices)

    def _devices_failed(self, error: ApiError) -> None:
        if error.network != "cancelled":
            self.status.error(f"Cannot read the devices: {friendly(error)}")

    # -- estimate --------------------------------------------------------------------------
    def estimate(self, model: str) -> Call | None:
        if not model:
            return None
        self.estimate_label.setText(f"Estimating {model}…")
        call = self.client.estimate(model)
        call.succeeded.connect(lambda body: self.show_estimate(Estimate.from_json(body)))
        call.failed.connect(lambda e: self.estimate_label.setText(friendly(e)))
        return call

    def show_estimate(self, est: Estimate) -> None:
        where = "GPU memory" if est.device == "gpu" else "memory"
        verdict = "It fits." if est.fits else "It does not fit: part of it would run slower, or loading would fail."
        self.estimate_label.setText(
            f"<b>{est.model}</b> needs about <b>{human_size(est.total)}</b>: weights {human_size(est.weights)}"
            f" + KV cache {human_size(est.kv_cache)} at {est.context_length:,} tokens"
            f" + compute {human_size(est.compute)}. Free {where}: {human_size(est.free_memory)}. {verdict}"
        )
        self.estimated.emit(est)
