"""scikit-learn's bundled 8x8 digits (1,797 images, 10 classes): real, tiny, always offline.

Pixels are 0..16 in the original; stored as uint8 ``round(v * 255 / 16)`` so every
dataset here has the same uint8 convention. There is no official split, so a fixed one
is made: per class, 25% of the images (rounded) chosen with numpy's PCG64 seeded 0 —
independent of any task seed, so the test images never move between runs. Both splits
keep the original order (1,347 train / 450 test images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core import CLASS_NAMES, DataError, LoadedArrays

TEST_FRACTION = 0.25
SPLIT_SEED = 0


def load_digits(directory: Path | None, origin: str, allow_download: bool) -> LoadedArrays:
    """The registry's loader: digits reads no files, so a ``data_dir`` argument is an
    error (``$QDISTILL_DATA_DIR`` is ignored: it is meant for the other datasets)."""
    del allow_download
    if directory is not None and origin == "data_dir argument":
        raise DataError(f"digits is bundled with scikit-learn and reads no files, but a data "
                        f"directory was given ({directory}); drop --data-dir, or name the "
                        "dataset your files are (mnist, fashion-mnist, cifar10)")
    return load_digits_arrays()


def load_digits_arrays() -> LoadedArrays:
    """Both splits of the digits data as uint8 (N,1,8,8)."""
    try:  # an optional dependency: the data ships inside scikit-learn
        import sklearn
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset ships with scikit-learn, which is not "
                        "installed: pip install 'qdistill[digits]'") from None

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        n_test = int(round(TEST_FRACTION * len(idx)))
        is_test[rng.permutation(idx)[:n_test]] = True
    arrays = {
        "train_images": images[~is_test],
        "train_labels": labels[~is_test],
        "test_images": images[is_test],
        "test_labels": labels[is_test],
    }
    source = f"scikit-learn {sklearn.__version__} load_digits (bundled)"
    tried = [{"source": "scikit-learn load_digits (bundled)", "status": "used"}]
    checks = {"digits.csv.gz": "not checked: bundled with scikit-learn"}
    return LoadedArrays("digits", arrays, list(CLASS_NAMES["digits"]), source, checks, tried)
