"""Shared pytest setup.

Tests never use the network: downloads are off unless a test passes download=True with
a local file:// mirror. The package is imported from src/ even when not installed.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("QDISTILL_OFFLINE", "1")

_SRC = Path(__file__).resolve().parents[1] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

# Hermetic cache: tests never read or write the user's ~/.cache/qdistill (teachers,
# decoded datasets, teacher logits). Tests that need their own set the variable again.
if "QDISTILL_TEST_KEEP_CACHE" not in os.environ:
    import tempfile

    os.environ["QDISTILL_CACHE_DIR"] = tempfile.mkdtemp(prefix="qdistill-test-cache-")


import pytest  # noqa: E402  (after the sys.path setup above)


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """Own cache dir (so "nothing was cached or trained" can be checked), no data dir
    from the environment, offline, and a fresh in-memory dataset cache."""
    from qdistill.data import clear_memory_cache

    monkeypatch.setenv("QDISTILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("QDISTILL_DATA_DIR", raising=False)
    monkeypatch.setenv("QDISTILL_OFFLINE", "1")
    clear_memory_cache()
    yield
    clear_memory_cache()
