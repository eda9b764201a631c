"""The frozen executable's entry point: the same `pollama` CLI (and tray app, and hidden runner) as `app.cli:main`."""

import multiprocessing
import sys

from app.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
