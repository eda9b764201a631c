"""The store tests again, through the portable file calls (`conftest.posix_calls_unavailable`).

Blobs and manifests are written, fsynced and renamed with the calls every OS
has; the server-level tests start real servers, which inherit
`POLLAMA_PORTABLE_IO=1`, and the crash test kills one mid-upload.
"""

from __future__ import annotations

from tests.server.store import test_create, test_fileio, test_store_integrity
from tests.support.rerun import rerun

globals().update(rerun(test_store_integrity))
globals().update(rerun(test_create))
globals().update(rerun(test_fileio))
