"""server.atomicfile: a file is replaced whole or not at all, durably, and leaves no temp file behind."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import atomicfile

POSIX = os.name == "posix"


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder of the test's own (the suite's conftest puts a home folder in `tmp_path`)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def umask_077() -> Iterator[None]:
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def test_writes_a_new_file_creating_its_folder(folder: Path) -> None:
    target = folder / "a" / "b" / "f.json"
    atomicfile.write_text(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    assert names(target.parent) == ["f.json"]


def test_replaces_an_existing_file_whole(folder: Path) -> None:
    target = folder / "f"
    target.write_bytes(b"old contents, longer than the new")
    atomicfile.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert names(folder) == ["f"]


def test_text_is_written_as_given_without_newline_translation(folder: Path) -> None:
    target = folder / "f"
    atomicfile.write_text(target, "a\nb\r\n")
    assert target.read_bytes() == b"a\nb\r\n"


def test_an_error_while_writing_leaves_the_old_file_and_no_temp(folder: Path) -> None:
    target = folder / "settings.json"
    target.write_bytes(b"old")

    class Boom(Exception):
        pass

    with pytest.raises(Boom), atomicfile.writing(target) as f:
        f.write(b"half of the new")
        raise Boom
    assert target.read_bytes() == b"old"
    assert names(folder) == ["settings.json"]


def test_a_failed_rename_leaves_the_old_file_and_no_temp(folder: Path) -> None:
    # the target is a folder with something in it: the rename itself fails, after the bytes were synced
    target = folder / "taken"
    target.mkdir()
    (target / "inside").write_bytes(b"kept")
    with pytest.raises(OSError):
        atomicfile.write_bytes(target, b"new")
    assert names(folder) == ["taken"]
    assert (target / "inside").read_bytes() == b"kept"


def test_a_failing_before_replace_hook_keeps_the_old_file(folder: Path) -> None:
    target = folder / "f"
    target.write_bytes(b"old")
    seen: list[bytes] = []

    def hook(tmp: Path) -> None:
        seen.append(tmp.read_bytes())  # the temp file is complete when the hook runs
        raise PermissionError("no")

    with pytest.raises(PermissionError), atomicfile.writing(target, before_replace=hook) as f:
        f.write(b"new")
    assert seen == [b"new"]
    assert target.read_bytes() == b"old"
    assert names(folder) == ["f"]


def test_a_writer_killed_mid_write_leaves_the_old_file_and_only_a_temp_name(folder: Path) -> None:
    """A crash cannot be cleaned up after: what it leaves is a `.tmp-` file, which the store's sweep removes."""
    target = folder / "manifest"
    target.write_bytes(b"old")
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from server import atomicfile
        with atomicfile.writing(Path({str(target)!r})) as f:
            f.write(b"half")
            f.flush()
            os._exit(3)
        """
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, check=False)
    assert done.returncode == 3
    assert target.read_bytes() == b"old"
    left = [n for n in names(folder) if n != "manifest"]
    assert len(left) == 1 and left[0].startswith(atomicfile.TEMP_PREFIX)


def test_one_temp_name_scheme(folder: Path) -> None:
    made = {atomicfile.temp_path(folder) for _ in range(100)}
    assert len(made) == 100
    assert all(p.parent == folder and re.fullmatch(r"\.tmp-[0-9a-f]{16}", p.name) for p in made)


@pytest.mark.skipif(not POSIX, reason="permission bits are POSIX")
def test_mode_is_set_from_creation_and_exactly(folder: Path, umask_077: None) -> None:
    private = folder / "id_ed25519"
    public = folder / "id_ed25519.pub"
    atomicfile.write_bytes(private, b"secret", mode=0o600)
    atomicfile.write_bytes(public, b"public", mode=0o644)  # the umask would make it 0600
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644


@pytest.mark.skipif(not POSIX, reason="permission bits are POSIX")
def test_without_a_mode_the_umask_decides(folder: Path, umask_077: None) -> None:
    target = folder / "export.md"
    atomicfile.write_text(target, "# chat\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.skipif(not POSIX, reason="a folder is opened for fsync only on POSIX")
def test_the_file_and_then_its_folder_are_synced(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each real `fsync` still runs; the test records what it was given, as (kind, inode) in call order."""
    synced: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    target = folder / "f"
    atomicfile.write_bytes(target, b"data")
    assert synced == [("file", target.stat().st_ino), ("dir", folder.stat().st_ino)]


def test_fsync_dir_of_a_missing_folder_is_nothing(folder: Path) -> None:
    atomicfile.fsync_dir(folder / "missing")  # a file system that cannot sync a folder is not an error
