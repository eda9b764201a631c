"""The single-instance tests again, with the POSIX-only modules gone (`conftest.posix_calls_unavailable`).

The guard's name no longer asks the OS for a user name (`getpass` falls back
to `pwd`, which Windows lacks), and who is first is the lock file's call,
not the socket's, so these run the code that Windows and macOS run.
"""

from __future__ import annotations

from tests.support.rerun import rerun
from tests.ui import test_app, test_single_instance

globals().update(
    rerun(test_app, "test_single_instance_hands_over", "test_second_launch_brings_the_window_forward_on_its_page")
)
globals().update(rerun(test_single_instance))
