"""Your own data in Python: arrays or a map-style torch ``Dataset`` as a dataset.

    mine = make_task(from_arrays(x_tr, y_tr, x_te, y_te, class_names=["a", "b", "c"]))
    mine = make_task(from_dataset(train_ds, test_ds), "0-2", train_per_class=100)

The same checks as a ``.npz`` file (``own.py``) apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .core import DataError, RawDataset
from .own import as_array, check_arrays, image_layout
from .registry import is_builtin


def from_arrays(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any,
    class_names: Sequence[str] | None = None, name: str = "mine", *,
    layout: str | None = None,
) -> RawDataset:
    """Your own arrays (numpy or torch, CPU or not) as a dataset ``make_task`` accepts:
    ``make_task(from_arrays(...), "0-2", train_per_class=100)``.

    Same rules as a ``.npz`` file (module docstring): images (N,H,W), (N,H,W,C) or
    (N,C,H,W), uint8 0..255 or float in [0, 1]; labels class indices 0..K-1 or
    class-name strings; ``layout`` "NHWC"/"NCHW" when the shape is ambiguous. ``name``
    is what run metadata records (built-in names are refused, to avoid confusion).
    """
    name = _check_name(name)
    arrays, names = check_arrays(x_train, y_train, x_test, y_test, class_names,
                                 layout=layout)
    return _raw(name, arrays, names, f"in-memory arrays {name!r} (from_arrays)")


def from_dataset(
    train: Any, test: Any, class_names: Sequence[str] | None = None, name: str = "mine",
) -> RawDataset:
    """Any two map-style datasets (``len(ds)``, ``ds[i] -> (image, label)``) as a dataset
    ``make_task`` accepts (see :func:`from_arrays`).

    An image is a torch tensor or numpy array — (H, W), or (C, H, W) for a tensor (the
    torch convention, e.g. after ``ToTensor()``), (H, W, C) or (C, H, W) for an array —
    or a PIL image (converted with ``np.asarray``; all images must have the same mode
    and size). A label is an int, a 0-d tensor/array or a class-name string.
    ``class_names`` defaults to the train dataset's ``classes`` attribute when it is a
    list of strings (torchvision datasets have one).
    """
    name = _check_name(name)
    if class_names is None:
        found = getattr(train, "classes", None)
        if isinstance(found, Sequence) and found and all(isinstance(c, str) for c in found):
            class_names = list(found)
    parts = {}
    for split, ds in (("train", train), ("test", test)):
        images, labels = _items(ds, split)
        parts[f"x_{split}"], parts[f"y_{split}"] = images, labels
    arrays, names = check_arrays(parts["x_train"], parts["y_train"], parts["x_test"],
                                 parts["y_test"], class_names, layout="NCHW")
    return _raw(name, arrays, names, f"torch datasets {name!r} (from_dataset: "
                f"{type(train).__name__}, {type(test).__name__})")


def _items(ds: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        n = len(ds)
    except TypeError:
        raise DataError(f"the {split} dataset ({type(ds).__name__}) has no len(): "
                        "from_dataset needs a map-style dataset") from None
    if n == 0:
        raise DataError(f"the {split} dataset is empty")
    images, labels = [], []
    for i in range(n):
        item = ds[i]
        if not isinstance(item, tuple | list) or len(item) < 2:
            raise DataError(f"{split} dataset item {i} is a {type(item).__name__}, not an "
                            "(image, label) pair")
        image = _chw(item[0], f"{split} image {i}")
        if images and image.shape != images[0].shape:
            raise DataError(f"{split} image {i} has shape {image.shape} (C, H, W) but image "
                            f"0 has {images[0].shape}; all images must have the same size "
                            "and channels: resize them")
        if images and image.dtype != images[0].dtype:
            image = image.astype(np.result_type(image, images[0]))
        images.append(image)
        labels.append(_label(item[1], f"{split} label {i}"))
    dtype = np.result_type(*{im.dtype for im in images})
    return np.stack([im.astype(dtype, copy=False) for im in images]), np.array(labels)


def _chw(image: Any, what: str) -> np.ndarray:
    """One image as (C, H, W)."""
    if hasattr(image, "mode") and hasattr(image, "size") and hasattr(image, "getbands"):
        a = np.asarray(image)  # PIL: (H, W) or (H, W, C)
        return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    is_tensor = isinstance(image, torch.Tensor)
    a = as_array(image, what)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3:
        if is_tensor:
            return a
        return a.transpose(2, 0, 1) if image_layout((1, *a.shape), what, None) == "NHWC" else a
    raise DataError(f"{what} has shape {a.shape}; an image is (H, W), (C, H, W) or "
                    "(H, W, C)")


def _label(label: Any, what: str) -> int | str:
    if isinstance(label, str):
        return label
    if isinstance(label, torch.Tensor | np.ndarray):
        count = label.numel() if isinstance(label, torch.Tensor) else label.size
        if count == 1:
            label = label.reshape(()).item()
        else:
            raise DataError(f"{what} has shape {tuple(label.shape)}; a label is one class "
                            "index (or a class-name string)")
    if isinstance(label, bool | int | np.integer):
        return int(label)
    if isinstance(label, float | np.floating) and float(label).is_integer():
        return int(label)
    raise DataError(f"{what} is {label!r}; a label is a class index 0..K-1 or a class-name "
                    "string")


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"name must be a non-empty string, got {name!r}")
    if is_builtin(name):
        raise DataError(f"name {name!r} is a built-in dataset; call your data something "
                        "else")
    return name


def _raw(name: str, arrays: dict[str, np.ndarray], names: list[str], source: str) -> RawDataset:
    return RawDataset(
        name=name,
        train_images=torch.from_numpy(arrays["train_images"]),
        train_labels=torch.from_numpy(arrays["train_labels"]),
        test_images=torch.from_numpy(arrays["test_images"]),
        test_labels=torch.from_numpy(arrays["test_labels"]),
        class_names=list(names),
        source=source,
        checksums={"arrays": "not checked: your own data"},
        sources_tried=[{"source": source, "status": "used"}],
    )
