"""The Linux installers, installed as a person would: the .deb with apt-get (as root), the tarball's install script.

Both wrap one bundle, built here with `packaging/build.py` (the installed
llama.cpp build, no `--check`: `test_bundle.py` checks a bundle's insides),
or the one `POLLAMA_TEST_BUNDLE` names (CI passes the bundle it just built
and checked). The .deb test changes the machine (it installs a package), so
it runs only as root, refuses to touch a pollama package already installed,
and purges its own in any case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.live_server import LiveServer

ROOT = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"

pytest.importorskip("PyInstaller", reason="pyinstaller is in the test extra")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux installers")

#: What the package puts outside /opt/pollama.
PACKAGE_FILES = [
    Path("/usr/bin/pollama"),
    Path("/usr/share/applications/pollama.desktop"),
    Path("/usr/share/icons/hicolor/scalable/apps/pollama.svg"),
    Path("/etc/xdg/autostart/pollama.desktop"),
]


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle for the run: under pytest-xdist each worker has its own session, so a lock in the
    folder all workers' temp folders share makes the first build it and the others wait and reuse it."""
    given = os.environ.get("POLLAMA_TEST_BUNDLE")
    if given:
        return Path(given)
    import fcntl  # these tests are Linux-only

    shared = tmp_path_factory.getbasetemp().parent / "installer-bundle"
    shared.mkdir(exist_ok=True)
    exe = shared / "dist" / "pollama" / "pollama"
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not exe.exists():
            done = subprocess.run(
                [sys.executable, "packaging/build.py", "--dist", str(shared / "dist"), "--work", str(shared / "work")],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            shutil.rmtree(shared / "work", ignore_errors=True)
    return exe.parent


def run(*command: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"$ {' '.join(map(str, command))}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def serves_and_reports_its_version(exe: Path, home: Path) -> None:
    """`pollama serve` from the installed program answers; `pollama --version` asks it (same version: one line)."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    server = LiveServer(home / "models", command=[str(exe), "serve"], env=env).start(timeout=60)
    try:
        assert httpx.get(server.url + "/api/version", timeout=5).json()["version"]  # Ollama's API version
        printed = run(exe, "--version", env={**server.env(), **env})
        assert printed.strip() == f"pollama version is {VERSION}"  # asked the server; no client-mismatch warning
    finally:
        assert server.stop() == 0, server.log()


@pytest.fixture
def apt_machine() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.skip("installs a package: run as root (CI does)")
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.skip("needs Debian's apt-get and dpkg-deb")
    if subprocess.run(["dpkg", "-s", "pollama"], capture_output=True).returncode == 0:
        pytest.skip("a pollama package is installed on this machine; not replacing it")
    try:
        yield
    finally:
        subprocess.run(["apt-get", "purge", "-y", "-qq", "pollama"], capture_output=True, env=apt_env())


def apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}


def test_the_deb_installs_serves_and_purges_without_a_trace(apt_machine: None, bundle: Path, tmp_path: Path) -> None:
    run(
        sys.executable, ROOT / "packaging" / "deb.py", "--bundle", bundle, "--out", tmp_path,
        "--compression", "gzip", "--level", "1",
    )  # fmt: skip
    [deb] = tmp_path.glob(f"pollama_{VERSION}_*.deb")
    assert "Package: pollama" in run("dpkg-deb", "--field", deb)

    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", f"./{deb.name}"],
        cwd=tmp_path, env=apt_env(), check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    installed = [Path(p) for p in run("dpkg", "-L", "pollama").splitlines() if p.strip()]
    assert Path("/opt/pollama/pollama") in installed and all(p in installed for p in PACKAGE_FILES)
    assert os.readlink("/usr/bin/pollama") == "/opt/pollama/pollama"
    assert "Exec=pollama app --hidden" in Path("/etc/xdg/autostart/pollama.desktop").read_text()
    assert "Exec=pollama app" in Path("/usr/share/applications/pollama.desktop").read_text()
    serves_and_reports_its_version(Path("/usr/bin/pollama"), tmp_path / "home")

    subprocess.run(["apt-get", "remove", "-y", "-qq", "pollama"], env=apt_env(), check=True, capture_output=True)
    left = [p for p in installed if p.exists() or p.is_symlink()]
    assert not Path("/opt/pollama").exists() and Path("/etc/xdg/autostart/pollama.desktop") in left  # a conffile
    subprocess.run(["apt-get", "purge", "-y", "-qq", "pollama"], env=apt_env(), check=True, capture_output=True)
    left = [p for p in installed if (p.exists() or p.is_symlink()) and "pollama" in str(p)]
    assert left == []
    assert subprocess.run(["dpkg", "-s", "pollama"], capture_output=True).returncode != 0


def test_the_tarball_installs_for_a_user_runs_and_uninstalls(bundle: Path, tmp_path: Path) -> None:
    run(sys.executable, ROOT / "packaging" / "tarball.py", "--bundle", bundle, "--out", tmp_path, "--level", "1")
    [archive] = tmp_path.glob(f"pollama-{VERSION}-linux-*.tar.gz")
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        tar.extractall(tmp_path / "unpacked", filter="tar")
    prefix = tmp_path / "prefix"
    run("sh", tmp_path / "unpacked" / top / "install.sh", "--prefix", prefix)

    exe = prefix / "bin" / "pollama"
    assert exe.resolve() == (prefix / "opt" / "pollama" / "pollama").resolve()
    desktop = (prefix / "share" / "applications" / "pollama.desktop").read_text()
    assert f"Exec={prefix}/opt/pollama/pollama app" in desktop  # absolute: ~/.local/bin is not always on PATH
    assert (prefix / "share" / "icons" / "hicolor" / "scalable" / "apps" / "pollama.svg").exists()
    serves_and_reports_its_version(exe, tmp_path / "home")

    run("sh", tmp_path / "unpacked" / top / "install.sh", "--uninstall", "--prefix", prefix)
    left = [p for p in prefix.rglob("*") if p.is_file() or p.is_symlink()]
    # update-desktop-database's index of the whole applications folder (shared with other apps) may stay
    assert [p for p in left if p.name != "mimeinfo.cache"] == []
