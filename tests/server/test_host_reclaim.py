"""Free page reporting read from a sysfs tree: which balloon drivers count, and what does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from server.host_reclaim import reclaims_free_memory


def _sysfs(root: Path, *, page_reporting: bool = True) -> Path:
    if page_reporting:
        (root / "module" / "page_reporting" / "parameters").mkdir(parents=True)
    return root


def _bind(root: Path, bus: str, driver: str, device: str, features: str | None = None) -> None:
    """A device under /sys/devices, linked from its driver's folder as the kernel does."""
    target = root / "devices" / device
    target.mkdir(parents=True)
    if features is not None:
        (target / "features").write_text(features + "\n")
    folder = root / "bus" / bus / "drivers" / driver
    folder.mkdir(parents=True, exist_ok=True)
    for control in ("bind", "unbind", "uevent"):
        (folder / control).touch()
    os.symlink(target, folder / device)


# Firecracker's balloon as this machine has it: bits 1, 2, 5 (reporting) and 7.
REPORTING = "0110010100000000000000000000000010000000"
# The same device without free page reporting: stats and deflate-on-OOM only.
NOT_REPORTING = "0110000100000000000000000000000010000000"


def test_a_virtio_balloon_that_reports_free_pages(tmp_path: Path) -> None:
    _bind(_sysfs(tmp_path), "virtio", "virtio_balloon", "virtio0", REPORTING)
    assert reclaims_free_memory(tmp_path)


def test_a_virtio_balloon_without_reporting_does_not_count(tmp_path: Path) -> None:
    _bind(_sysfs(tmp_path), "virtio", "virtio_balloon", "virtio0", NOT_REPORTING)
    assert not reclaims_free_memory(tmp_path)


def test_a_hyperv_balloon_counts(tmp_path: Path) -> None:
    _bind(_sysfs(tmp_path), "vmbus", "hv_balloon", "1eccfd72-4b41-45ef-b73a-4a6e44c12924")
    assert reclaims_free_memory(tmp_path)


@pytest.mark.parametrize(
    "case", ["bare metal", "driver loaded, no device", "kernel without page reporting", "unreadable features"]
)
def test_what_does_not_count(tmp_path: Path, case: str) -> None:
    if case == "driver loaded, no device":
        folder = _sysfs(tmp_path) / "bus" / "virtio" / "drivers" / "virtio_balloon"
        folder.mkdir(parents=True)
        (folder / "bind").touch()
    elif case == "kernel without page reporting":
        _bind(_sysfs(tmp_path, page_reporting=False), "virtio", "virtio_balloon", "virtio0", REPORTING)
    elif case == "unreadable features":
        _bind(_sysfs(tmp_path), "virtio", "virtio_balloon", "virtio0", None)
    assert not reclaims_free_memory(tmp_path)
