"""The pull tests again, through the portable file calls (`conftest.posix_calls_unavailable`).

A pull writes its parts from several threads and hashes from another
(positional I/O under a lock where there is no pread/pwrite), checkpoints
with `fsync` where there is no `fdatasync`, and never opens `O_DIRECT` nor
calls `sync_file_range`. The server-level tests start real servers, which
inherit `POLLAMA_PORTABLE_IO=1`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from server.registry.partial import PartialFile
from tests.server.registry import test_end_to_end, test_partial, test_pull_push
from tests.server.registry.conftest import random_bytes
from tests.support.rerun import rerun

globals().update(rerun(test_pull_push))
globals().update(
    rerun(
        test_end_to_end,
        "test_push_delete_pull_with_the_ollama_client",
        "test_pull_errors_through_the_api",
        "test_pull_resumes_after_sigkill",
    )
)
globals().update(rerun(test_partial, "test_partial_file_writes_in_pieces_that_keep_page_cache_folios_small"))


def test_the_partial_file_takes_the_portable_path(tmp_path: Path) -> None:
    """What the tests above run through: no direct descriptor, positional I/O under a lock, fsync."""
    data = random_bytes(1_000_000, seed=5)
    file = PartialFile(tmp_path, "sha256:" + hashlib.sha256(data).hexdigest())
    file.open(len(data), fresh=True)
    try:
        assert not file.direct
        assert file._io is not None and not file._io.native
        file.write_at(memoryview(data), 0)
        file.start_writeback(0, len(data))  # nothing on this path
        file.checkpoint([])
        out = memoryview(bytearray(len(data)))
        assert file.read_into(out, 0) == len(data) and bytes(out) == data
        file.publish()
    finally:
        file.close()
    assert file.final.read_bytes() == data
