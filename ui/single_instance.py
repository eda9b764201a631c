"""One tray per user: a second launch hands over to the first and exits.

Who is first is decided by a lock file (QLockFile: it holds the owner's
process id, so the lock of a crashed instance is seen as stale and taken
over, on every OS). The first instance then listens on a per-user local
socket (a Unix socket, or a Windows named pipe, via QLocalServer); a later
one connects, says "show", and the first brings its window forward.

The lock, not the socket, decides because the socket cannot, portably: on
Windows two servers may listen on one pipe name at once (Qt documents it for
`QLocalServer::listen`), and on Unix a launch that finds no one answering
yet must remove the socket file to listen, which would steal it from a first
instance that is still starting. A launch that finds the lock held waits a
moment for the holder to answer.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import platformdirs
from PySide6.QtCore import QDir, QLockFile, QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

CONNECT_TIMEOUT_MS = 500
#: How long a later launch waits for a first instance that holds the lock but does not answer yet.
HANDOVER_WAIT_SECONDS = 5.0


def default_name() -> str:
    """Per user, and per config folder so isolated test homes do not see each other.

    The user config folder is inside the user's home on every OS, so it tells
    users apart without asking the OS for a user name (`getpass` needs `pwd`
    or environment variables that a service may lack).
    """
    key = platformdirs.user_config_dir("pollama")
    return "pollama-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def lock_path(name: str) -> Path:
    """The lock file beside where QLocalServer puts its Unix socket (the temp folder, per user on Windows and macOS)."""
    return Path(QDir.tempPath()) / f"{name}.lock"


class SingleInstance(QObject):
    activated = Signal(str)  # the message a later launch sent ("show")

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or default_name()
        self.server: QLocalServer | None = None
        self._connections: list[QLocalSocket] = []
        self._lock = QLockFile(str(lock_path(self.name)))
        self._lock.setStaleLockTime(0)  # stale only when its process is gone, never by age

    def acquire(self, message: str = "show", wait: float = HANDOVER_WAIT_SECONDS) -> bool:
        """True: this is the first instance (now listening). False: another one got `message`."""
        if not self._lock.tryLock(0):
            if self._lock.error() == QLockFile.LockError.LockFailedError:
                return not self._hand_over(message, wait)
            # The lock file cannot be written here (no temp folder): run unguarded rather than not at all.
        QLocalServer.removeServer(self.name)  # the lock is ours, so any socket left is a crashed instance's
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if server.listen(self.name):
            server.newConnection.connect(self._accept)
            self.server = server
        # else sockets are unusable here: a tray that cannot be asked to show beats no tray
        return True

    def _hand_over(self, message: str, wait: float) -> bool:
        """Tell the lock's holder; it may still be starting, so retry until `wait` runs out."""
        deadline = time.monotonic() + wait
        while True:
            if self.notify_running(message):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def notify_running(self, message: str) -> bool:
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
            return False
        socket.write((message + "\n").encode())
        socket.flush()
        socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
        socket.disconnectFromServer()
        return True

    def _accept(self) -> None:
        assert self.server is not None
        while self.server.hasPendingConnections():
            conn = self.server.nextPendingConnection()
            self._connections.append(conn)
            conn.readyRead.connect(self._drain)
            conn.disconnected.connect(self._drain)
        self._drain()

    def _drain(self) -> None:
        """Read whole lines from every connection; forget the ones the other side closed."""
        for conn in list(self._connections):
            while conn.canReadLine():
                line = bytes(conn.readLine().data()).decode("utf-8", "replace").strip()
                if line:
                    self.activated.emit(line)
            if conn.state() == QLocalSocket.LocalSocketState.UnconnectedState:
                self._connections.remove(conn)

    def release(self) -> None:
        self._connections.clear()
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._lock.isLocked():
            self._lock.unlock()
