"""Bundle tests: packaging/ on sys.path (see bundles.py)."""

from tests.packaging import bundles  # noqa: F401  (puts packaging/ on sys.path)
