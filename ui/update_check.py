"""Whether a newer pollama release exists: off unless the person turns it on, and no telemetry.

When `POLLAMA_UPDATE_CHECK=1` (the Settings checkbox) and an address is set
(`POLLAMA_UPDATE_URL`, in the environment or the settings file, where a
packager or a person puts it), the tray asks that address once at start and
once a day with one plain GET, no query, no cookie, no identifier, and reads
a small JSON document a release publishes beside its files:

    {"version": "0.2.0", "url": "https://…/releases/0.2.0"}

A newer version shows as a tray menu entry that opens `url`. Versions are
compared as PEP 440 versions (`packaging`, the library pip uses), so
`0.10.0` is newer than `0.9.1` and a pre-release is older than its release.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from PySide6.QtCore import QObject, QTimer, Signal

# PyPI's `packaging` (pip's own version rules), not this repository's packaging/ folder.
from packaging.version import InvalidVersion, Version
from ui.settings_store import SettingsError, SettingsStore, clean

log = logging.getLogger("pollama.ui")

UPDATE_CHECK = "POLLAMA_UPDATE_CHECK"
UPDATE_URL = "POLLAMA_UPDATE_URL"
#: How often a running tray asks again.
INTERVAL_MS = 24 * 60 * 60 * 1000
#: Feeds are a few hundred bytes; anything much larger is not one.
MAX_FEED_BYTES = 64 * 1024


class UpdateError(Exception):
    """The update address did not answer with a release a person can be told about."""


@dataclass(frozen=True)
class Release:
    version: str
    url: str


@dataclass(frozen=True)
class UpdateSettings:
    enabled: bool
    url: str  # "" = none set

    @property
    def active(self) -> bool:
        return self.enabled and bool(self.url)


def _on(value: str | None) -> bool:
    return clean(value or "").lower() in ("1", "true", "yes", "on")


def update_settings(store: SettingsStore) -> UpdateSettings:
    """Environment over settings file, as for every other setting."""
    try:
        saved: Mapping[str, str] = store.load()
    except SettingsError:
        saved = {}
    values = {**saved, **{k: v for k in (UPDATE_CHECK, UPDATE_URL) if (v := store.environ.get(k)) is not None}}
    return UpdateSettings(_on(values.get(UPDATE_CHECK)), clean(values.get(UPDATE_URL, "")))


def _http_url(value: object, what: str) -> str:
    if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).netloc:
        raise UpdateError(f"{what} must be an http(s) address, got {value!r}")
    return value


def parse_release(body: bytes) -> Release:
    """The feed document → a Release; anything else is an UpdateError that says what is wrong."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise UpdateError(f"the update address did not answer with JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UpdateError('the update document must be a JSON object like {"version": "…", "url": "…"}')
    version = data.get("version")
    if not isinstance(version, str):
        raise UpdateError('the update document has no "version" string')
    try:
        Version(version)
    except InvalidVersion:
        raise UpdateError(f"the update document's version {version!r} is not a version number") from None
    return Release(version, _http_url(data.get("url"), 'the update document\'s "url"'))


def is_newer(release: Release, current: str) -> bool:
    try:
        return Version(release.version) > Version(current)
    except InvalidVersion:
        return False  # a development build with no release number: never nag


def fetch_release(url: str, *, timeout: float = 15.0) -> Release:
    """One plain GET of `url` (redirects followed, proxies from the environment): nothing about this machine is sent."""
    _http_url(url, UPDATE_URL)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=True) as client:
            with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise UpdateError(f"the update address answered {response.status_code}")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_FEED_BYTES:
                        raise UpdateError(f"the update document is larger than {MAX_FEED_BYTES // 1024} KiB")
    except httpx.HTTPError as exc:
        raise UpdateError(f"could not reach the update address: {exc}") from None
    return parse_release(body)


class UpdateChecker(QObject):
    """Asks the update address in a worker thread; tells the tray on the GUI thread."""

    available = Signal(object)  # Release, newer than the running version
    checked = Signal(str)  # "" when up to date or off, or what went wrong

    def __init__(self, store: SettingsStore, current_version: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.current_version = current_version
        self.latest: Release | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(INTERVAL_MS)
        self._timer.timeout.connect(self.check_now)
        self._worker: threading.Thread | None = None

    def start(self) -> None:
        """Check now (if on) and every day while the tray runs."""
        self._timer.start()
        self.check_now()

    def stop(self) -> None:
        self._timer.stop()

    def check_now(self) -> bool:
        """Start one check; False when checking is off, no address is set, or a check is under way."""
        settings = update_settings(self.store)
        if not settings.active or (self._worker is not None and self._worker.is_alive()):
            return False
        self._worker = threading.Thread(target=self._check, args=(settings.url,), name="update-check", daemon=True)
        self._worker.start()
        return True

    def _check(self, url: str) -> None:
        try:
            release = fetch_release(url)
        except UpdateError as exc:
            log.info("update check: %s", exc)
            self.checked.emit(str(exc))
            return
        if is_newer(release, self.current_version):
            log.info("pollama %s is available (running %s): %s", release.version, self.current_version, release.url)
            self.latest = release
            self.available.emit(release)
        self.checked.emit("")
