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
