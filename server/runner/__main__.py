"""`python -m server.runner`: the runner process (see main.py)."""

import sys

from server.runner.main import main

sys.exit(main(sys.argv[1:]))
