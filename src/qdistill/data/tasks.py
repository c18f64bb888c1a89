"""Tasks: a class subset of a dataset, per-class limits, and a validation split.

Rules (the paper selected epochs on the test set; we never do):
- Validation is always carved from the *training* split, stratified, seeded by ``seed``;
  the test split is only ever cut by ``test_per_class`` (first N), never sampled.
- Without ``train_per_class``: per class c, ``round(val_fraction * n_c)`` random images
  go to val (MNIST 0-5 with the default 0.1: 3,600 of 36,017), the rest stay in train.
- With ``train_per_class=N`` (the paper's "first 150 images of each class"): train is
  exactly the first N images of each class in dataset order, independent of ``seed``;
  val is ``val_per_class`` images per class drawn from that class's *remaining*
  training images. Default ``val_per_class = max(1, ceil(N * f / (1 - f)))`` so val is
  the fraction f of train + val: N=150, f=0.1 -> 17 per class.
- ``val_fraction=0`` (or ``val_per_class=0``) gives an empty val set of shape
  (0,C,H,W); the training loop then selects the last epoch.
- Each class's draw uses its own generator seeded (seed, class), so the val images of
  class 3 are the same whether the task is classes 0-5 or 0-7.
- Train, val and test keep the dataset order; labels are remapped to 0..K-1 in the
  order the classes were given (sorted for ranges); ``Task.classes[i]`` is the original
  label of new label i.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import DataError, ImageSet
from .raw import Dataset, load_arrays


@dataclass
class Task:
    """What a training run consumes: remapped train / val / test sets and their origin."""

    dataset: str
    classes: tuple[int, ...]
    class_names: list[str]
    train: ImageSet
    val: ImageSet
    test: ImageSet
    image_shape: tuple[int, int, int]
    source: str
    split_options: dict[str, Any] = field(default_factory=dict)
    # Training images the teacher labels softly and the student sees without their
    # labels (every label is UNLABELLED, -1: the true ones are never in it); None if
    # no transfer set was asked for.
    transfer: ImageSet | None = None
    _fingerprint: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """sha256 (hex) of the data this task holds: the pixels (uint8, or float32 for
        float data; the dtype is hashed too), shapes and (remapped) labels of its train,
        val and test splits, in order.

        It is the identity of the data a run actually used, whatever the dataset was
        called or where its files lay: the same images and labels from two directories
        give the same value, other images or labels another one. Teacher caches are
        keyed on it and every run records it (``data_fingerprint``). Computed once per
        Task (MNIST's 70,000 images, ~55 MB: ~0.05 s); the splits must not be modified
        afterwards.
        """
        if self._fingerprint is None:
            h = hashlib.sha256(b"qdistill task data v1")
            parts = [("train", self.train), ("val", self.val), ("test", self.test)]
            if self.transfer is not None:
                parts.append(("transfer", self.transfer))
            for name, part in parts:
                images = np.ascontiguousarray(part.images.cpu().numpy())
                labels = np.ascontiguousarray(part.labels.cpu().numpy().astype("<i8"))
                h.update(f"|{name} {images.dtype} {tuple(images.shape)}|".encode())
                h.update(images)  # C-contiguous buffers: hashed without a copy
                h.update(labels)
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """JSON-able summary for run metadata and cache keys.

        ``indices_sha256`` hashes which raw images are in each split, so two tasks with
        the same value hold the same images (``source`` is machine-specific; leave it out
        of a cache key if runs should be shared across machines).
        """
        k = self.num_classes
        digest = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            if part.indices is not None:
                digest.update(part.indices.numpy().astype("<i8").tobytes())
            digest.update(b"|")
        return {
            "dataset": self.dataset,
            "classes": list(self.classes),
            "class_names": list(self.class_names),
            "num_classes": k,
            "image_shape": list(self.image_shape),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "per_class": {
                name: torch.bincount(part.labels, minlength=k).tolist()
                for name, part in (("train", self.train), ("val", self.val), ("test", self.test))
            },
            "split": dict(self.split_options),
            "source": self.source,
            "indices_sha256": digest.hexdigest(),
        }


def parse_classes(spec: str | Sequence[int] | None, num_classes: int) -> tuple[int, ...]:
    """Class list from "0-5", "0,3,7", "0-3,7", a sequence of ints, or None (= all).

    Order is kept as written (ranges ascending). Empty, out-of-range, duplicate or
    malformed specs raise DataError listing the valid range.
    """
    valid = f"valid classes are 0..{num_classes - 1}"
    if spec is None:
        return tuple(range(num_classes))
    classes: list[int] = []
    if isinstance(spec, str):
        text = spec.strip()
        if text.lower() == "all":
            return tuple(range(num_classes))
        for part in text.split(","):
            part = part.strip()
            try:
                if "-" in part[1:]:
                    lo, hi = (int(x) for x in part.split("-", 1))
                    if lo > hi:
                        raise DataError(f"class range {part!r} is descending; write {hi}-{lo}")
                    classes.extend(range(lo, hi + 1))
                else:
                    classes.append(int(part))
            except ValueError:
                raise DataError(f"bad class spec {spec!r} (part {part!r}); use e.g. '0-5', "
                                f"'0,3,7' or '0-3,7'; {valid}") from None
    elif isinstance(spec, Sequence) and not isinstance(spec, bytes):
        for c in spec:
            if isinstance(c, bool) or not isinstance(c, int | np.integer):
                raise DataError(f"class {c!r} in {list(spec)!r} is not an integer; {valid}")
            classes.append(int(c))
    else:
        raise DataError(f"classes must be a string like '0-5' or a list of ints, got "
                        f"{spec!r}; {valid}")
    if not classes:
        raise DataError(f"empty class list {spec!r}; {valid}")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise DataError(f"classes {bad} out of range; {valid}")
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        raise DataError(f"classes {duplicates} listed twice in {spec!r}; {valid}")
    return tuple(classes)


# The label of an image whose label is hidden (a transfer set): never a class index.
UNLABELLED = -1


def default_val_per_class(train_per_class: int, val_fraction: float) -> int:
    """Val images per class so that val is ``val_fraction`` of train + val (at least 1)."""
    if val_fraction == 0:
        return 0
    return max(1, math.ceil(train_per_class * val_fraction / (1.0 - val_fraction)))


def make_task(
    name: Dataset,
    classes: str | Sequence[int] | None = None,
    *,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    val_fraction: float = 0.1,
    val_per_class: int | None = None,
    seed: int = 0,
    data_dir: str | Path | None = None,
    download: bool | None = None,
    transfer_per_class: int | str | None = None,
) -> Task:
    """Build a :class:`Task` (see the module docstring for the split rules).

    ``transfer_per_class``: with ``train_per_class`` (the labelled images), also a
    transfer set (``Task.transfer``) of that many further training images per class
    (``"all"``: every one left after train and val), in dataset order, with their labels
    hidden (all -1). None: no transfer set.

    ``name``: a built-in name (``mnist``, ...), a ``.npz`` file or an image folder (a
    path; ``Task.dataset`` is the path as written), or a RawDataset from
    ``from_arrays`` / ``from_dataset`` / ``load_raw`` (``Task.dataset`` is its name);
    see ``qdistill.data.registry`` for how a string is resolved.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0 and val_per_class not in (None, 0):
        raise DataError(f"val_fraction=0 means no validation set, but val_per_class="
                        f"{val_per_class}; set one of them consistently")
    for label, value in (("train_per_class", train_per_class), ("test_per_class",
                         test_per_class), ("val_per_class", val_per_class)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer)
                                  or value < 0 or (value == 0 and label != "val_per_class")):
            raise DataError(f"{label} must be a positive integer, got {value!r}")
    loaded = load_arrays(name, data_dir, download)
    a = loaded.arrays
    chosen = parse_classes(classes, len(loaded.class_names))
    if len(chosen) < 2:
        raise DataError(
            f"--classes {_spec_text(classes)} gives one class ({chosen[0]}): a classifier "
            "needs at least 2, and one class would score 100% by construction; give two "
            f"or more with --classes (e.g. 0-5; valid classes are "
            f"0..{len(loaded.class_names) - 1})")
    if train_per_class is not None and val_per_class is None:
        val_per_class = default_val_per_class(train_per_class, val_fraction)
    if transfer_per_class is not None and train_per_class is None:
        raise DataError("a transfer set is taken from the training images left after the "
                        "labelled ones: give --train-per-class (or --labels-per-class) N too")

    train_idx, val_idx, test_idx, transfer_idx = [], [], [], []
    for c in chosen:
        name_c = f"class {c} ({loaded.class_names[c]})"
        pool = np.flatnonzero(a["train_labels"] == c)
        if len(pool) == 0:
            raise DataError(f"{name_c} has no training images in {loaded.source}; drop "
                            "it from --classes or add its images")
        rng = np.random.default_rng([seed, c])
        if train_per_class is None:
            n_val = round(val_fraction * len(pool)) if val_per_class is None else val_per_class
            if n_val >= len(pool):
                raise DataError(f"{name_c}: val needs {n_val} of its {len(pool)} training "
                                "images, leaving none to train on; lower val_fraction")
            picked = np.zeros(len(pool), dtype=bool)
            picked[rng.choice(len(pool), size=n_val, replace=False)] = True
            train_idx.append(pool[~picked])
            val_idx.append(pool[picked])
        else:
            if train_per_class > len(pool):
                raise DataError(f"{name_c}: train_per_class={train_per_class} requested, only "
                                f"{len(pool)} training images available")
            rest = pool[train_per_class:]
            assert val_per_class is not None
            if val_per_class > len(rest):
                raise DataError(f"{name_c}: val_per_class={val_per_class} requested, only "
                                f"{len(rest)} training images left after the first "
                                f"{train_per_class}; lower val_per_class or train_per_class")
            train_idx.append(pool[:train_per_class])
            val_idx.append(rng.choice(rest, size=val_per_class, replace=False))
            if transfer_per_class is not None:
                left = np.setdiff1d(rest, val_idx[-1])  # sorted: dataset order
                n = len(left) if transfer_per_class == "all" else int(transfer_per_class)
                if n > len(left):
                    raise DataError(f"{name_c}: a transfer set of {n} images requested, only "
                                    f"{len(left)} training images left after the labelled "
                                    "and validation ones")
                transfer_idx.append(left[:n])
        test_pool = np.flatnonzero(a["test_labels"] == c)
        if len(test_pool) == 0:
            raise DataError(f"{name_c} has no test images in {loaded.source}; its accuracy "
                            "could not be measured: drop it from --classes or add its test "
                            "images")
        if test_per_class is not None:
            if test_per_class > len(test_pool):
                raise DataError(f"{name_c}: test_per_class={test_per_class} requested, only "
                                f"{len(test_pool)} test images available")
            test_pool = test_pool[:test_per_class]
        test_idx.append(test_pool)

    remap = np.full(len(loaded.class_names), -1, dtype=np.int64)
    remap[list(chosen)] = np.arange(len(chosen))
    train = _subset(a["train_images"], a["train_labels"], train_idx, remap)
    val = _subset(a["train_images"], a["train_labels"], val_idx, remap)
    test = _subset(a["test_images"], a["test_labels"], test_idx, remap)
    transfer = None
    if transfer_per_class is not None:
        hidden = np.full(len(remap), UNLABELLED, dtype=np.int64)  # every label -> -1
        transfer = _subset(a["train_images"], a["train_labels"], transfer_idx, hidden)
    shape = tuple(int(d) for d in a["train_images"].shape[1:])
    options = {"train_per_class": train_per_class, "test_per_class": test_per_class,
               "val_fraction": val_fraction, "val_per_class": val_per_class, "seed": seed,
               "transfer_per_class": transfer_per_class}
    return Task(loaded.name, chosen, [loaded.class_names[c] for c in chosen], train, val,
                test, (shape[0], shape[1], shape[2]), loaded.source, options, transfer)


def _spec_text(classes: str | Sequence[int] | None) -> str:
    """The class spec as the user wrote it ("3" for "3" or [3])."""
    if isinstance(classes, str):
        return classes.strip()
    return ",".join(str(c) for c in classes or ())


def _subset(images: np.ndarray, labels: np.ndarray, parts: list[np.ndarray],
            remap: np.ndarray) -> ImageSet:
    """Images at the union of ``parts`` (dataset order), with remapped labels (copies)."""
    idx = np.sort(np.concatenate(parts)).astype(np.int64) if parts else np.zeros(0, np.int64)
    return ImageSet(
        images=torch.from_numpy(images[idx]),  # fancy indexing copies: raw stays untouched
        labels=torch.from_numpy(remap[labels[idx]]),
        indices=torch.from_numpy(idx),
    )
