"""Who is first: the lock decides, so a launch never steals the socket of a first instance still starting.

The other process is a real one (a Python child using Qt), as a second
launch of the tray would be.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from pytestqt.qtbot import QtBot

from ui.single_instance import SingleInstance, lock_path

ROOT = Path(__file__).resolve().parents[2]

#: Takes the lock as a first instance's `acquire` would, but listens only a second later (a slow start).
SLOW_FIRST = textwrap.dedent(
    """
    import sys, time
    from PySide6.QtCore import QCoreApplication, QLockFile
    from PySide6.QtNetwork import QLocalServer
    from ui.single_instance import lock_path
    name = sys.argv[1]
    app = QCoreApplication([])
    lock = QLockFile(str(lock_path(name)))
    lock.setStaleLockTime(0)
    assert lock.tryLock(0), "the lock is free"
    print("locked", flush=True)
    time.sleep(1.0)
    QLocalServer.removeServer(name)
    server = QLocalServer()
    assert server.listen(name)
    assert server.waitForNewConnection(10_000)
    conn = server.nextPendingConnection()
    while not conn.canReadLine() and conn.waitForReadyRead(5_000):
        pass
    print("got", bytes(conn.readLine().data()).decode().strip(), flush=True)
    """
)

#: A first instance that dies without releasing anything (a crash): its lock file and socket stay behind.
CRASHING_FIRST = textwrap.dedent(
    """
    import os, sys
    from PySide6.QtCore import QCoreApplication
    from ui.single_instance import SingleInstance
    app = QCoreApplication([])
    instance = SingleInstance(sys.argv[1])
    assert instance.acquire()
    os._exit(0)
    """
)


def child(script: str, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, name], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_launch_while_the_first_still_starts_hands_over_instead_of_taking_its_place(
    qtbot: QtBot, tmp_path: Path
) -> None:
    name = "pollama-test-slow-" + tmp_path.name
    first = child(SLOW_FIRST, name)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "locked"
        second = SingleInstance(name)
        assert not second.acquire("show")  # not a second tray: the first one is told to show itself
        out, err = first.communicate(timeout=30)
        assert first.returncode == 0, err
        assert out.strip() == "got show"
        second.release()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_the_lock_and_socket_of_a_crashed_instance_are_taken_over(qtbot: QtBot, tmp_path: Path) -> None:
    name = "pollama-test-crash-" + tmp_path.name
    crashed = child(CRASHING_FIRST, name)
    _, err = crashed.communicate(timeout=30)
    assert crashed.returncode == 0, err
    assert lock_path(name).exists()  # left behind, holding a process id that is gone
    first = SingleInstance(name)
    assert first.acquire()
    try:
        with qtbot.waitSignal(first.activated, timeout=5000) as got:
            assert not SingleInstance(name).acquire("show")
        assert got.args == ["show"]
    finally:
        first.release()
    assert not lock_path(name).exists()
