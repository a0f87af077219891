"""Where the repository is, for tests and helpers (a helper module: conftest files are not imported)."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
# This folder's parent is on the tests' sys.path (pyproject: pythonpath) and on their children's PYTHONPATH.
HELPERS = Path(__file__).resolve().parents[1]
