"""One tray per user: a second launch hands over to the first and exits.

The first instance listens on a per-user local socket (a Unix socket or a
Windows named pipe, via QLocalServer). A later one connects, says "show",
and the first brings its window forward. A socket left by a crashed
instance is detected (nobody answers) and replaced.
"""

from __future__ import annotations

import getpass
import hashlib

import platformdirs
from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

CONNECT_TIMEOUT_MS = 500


def default_name() -> str:
    """Per user, and per config folder so isolated test homes do not see each other."""
    key = f"{getpass.getuser()}|{platformdirs.user_config_dir('pollama')}"
    return "pollama-" + hashlib.sha256(key.encode()).hexdigest()[:16]


class SingleInstance(QObject):
    activated = Signal(str)  # the message a later launch sent ("show")

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or default_name()
        self.server: QLocalServer | None = None
        self._connections: list[QLocalSocket] = []

    def acquire(self, message: str = "show") -> bool:
        """True: this is the first instance (now listening). False: another one got `message`."""
        if self.notify_running(message):
            return False
        QLocalServer.removeServer(self.name)  # stale socket of a crashed instance
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            # Lost a race with another launch (it answers now), or sockets are unusable here:
            # in the second case run anyway, a tray without the guard beats no tray.
            return not self.notify_running(message)
        server.newConnection.connect(self._accept)
        self.server = server
        return True

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
