"""Run tests as on an OS without the POSIX-only calls: the fallbacks Windows and macOS take, on Linux.

Every test here gets `posix_calls_unavailable`: `POLLAMA_PORTABLE_IO=1` (which
the portable layer, `server/store/fileio.py`, reads at each decision, and which
servers started by a test inherit), and the POSIX-only functions and modules
removed from this process as Windows' Python lacks them, so that any caller
that bypasses the portable layer fails here instead of on a user's machine.
"""

from __future__ import annotations

import os
import sys

import pytest

from server.store.fileio import PORTABLE_ENV

# The fixtures of the suites that `tests/portable/` runs again.
from tests.server.registry.conftest import make_service, store  # noqa: F401
from tests.ui.conftest import desktop, prompter, server  # noqa: F401

#: `os` attributes Windows' Python does not have (and macOS lacks `fdatasync`).
POSIX_ONLY_CALLS = (
    "pread",
    "pwrite",
    "preadv",
    "pwritev",
    "fdatasync",
    "O_DIRECT",
    "sched_getaffinity",
    "posix_fadvise",
)
#: Modules that exist only on POSIX systems.
POSIX_ONLY_MODULES = ("fcntl", "pwd", "grp", "resource", "termios")


@pytest.fixture(autouse=True)
def posix_calls_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PORTABLE_ENV, "1")
    for name in POSIX_ONLY_CALLS:
        monkeypatch.delattr(os, name, raising=False)
    for module in POSIX_ONLY_MODULES:
        monkeypatch.setitem(sys.modules, module, None)  # `import fcntl` now raises ImportError, as on Windows
