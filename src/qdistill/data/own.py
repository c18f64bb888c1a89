"""Your own data: a ``.npz`` file, numpy arrays, or any map-style torch Dataset.

``--dataset FILE.npz`` (read with ``np.load(allow_pickle=False)``: nothing in it can run
code) holds the keys

- ``x_train``, ``x_test``: images, uint8 0..255 (other integer types are accepted when
  every value is in 0..255) or float in [0, 1] (kept as float32, not rounded to uint8);
  shape ``(N, H, W)`` (grayscale), ``(N, H, W, C)`` or ``(N, C, H, W)`` with C = 1, 3
  or 4. The channel axis is the last one when the last dimension is 1, 3 or 4 and the
  second is not, the second in the opposite case; when both could be (``(N, 3, 4, 4)``)
  the reading that gives square images wins, and otherwise the optional ``layout`` key
  (``"NHWC"`` or ``"NCHW"``) must say. A uint8 train split with a float test split (or
  the reverse) is converted to float32 (uint8 / 255).
- ``y_train``, ``y_test``: labels, shape ``(N,)`` or ``(N, 1)``. Integers are class
  indices 0..K-1 (K = len(class_names), else the largest label + 1; a class with no
  images is allowed, and refused only when ``--classes`` picks it); floats are
  accepted when every value is a whole number. Strings are class *names*: the classes
  are then the sorted distinct labels of both splits (or ``class_names``' order), and
  ``--classes 0`` is the first of them.
- ``class_names`` (optional): one string per class, in class-index order.

Anything else (a missing key, an unknown key such as ``x_val``, wrong dimensions,
train/test images of different sizes, image/label counts that differ, pixels out of
range, NaN, fractional or negative labels, an object array) is a one-line DataError
naming the key and what to do.

In Python, ``from_arrays(...)`` and ``from_dataset(...)`` (``in_memory.py``) run the
same checks and return a :class:`RawDataset` that ``make_task``, ``load_raw`` and
``dataset_info`` accept in place of a name.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import DataError, LoadedArrays, RawDataset

IMAGE_KEYS: tuple[str, ...] = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL_KEYS: tuple[str, ...] = ("class_names", "layout")
CHANNELS: tuple[int, ...] = (1, 3, 4)  # grayscale, RGB, RGBA
LAYOUTS: tuple[str, ...] = ("NCHW", "NHWC")
MAX_CLASSES = 100_000  # integer labels are class indices: a larger one is a mistake
NOT_CHECKED = "not checked: your own data (runs record its content as data_fingerprint)"
ARRAY_NAMES: tuple[str, ...] = ("train_images", "train_labels", "test_images", "test_labels")


def check_images(x: Any, key: str, layout: str | None = None) -> np.ndarray:
    """Images as C-contiguous (N, C, H, W) uint8 0..255 or float32 in [0, 1], or a
    DataError naming ``key`` (see the module docstring for what is accepted)."""
    x = as_array(x, key)
    if x.dtype.kind not in "uif":
        raise DataError(f"{key} has dtype {x.dtype}; images must be uint8 (0..255) or "
                        "float (0..1)")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if image_layout(x.shape, key, layout) == "NHWC":
            x = x.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{key} has shape {x.shape} ({x.ndim} dimensions); images must be "
                        "(N, H, W), (N, H, W, C) or (N, C, H, W)")
    if x.shape[0] == 0:
        raise DataError(f"{key} holds no images (shape {x.shape}); each split needs some")
    if min(x.shape) == 0:
        raise DataError(f"{key} has shape {x.shape}: images of size 0")
    if x.dtype.kind == "f":
        finite = np.isfinite(x)
        if not finite.all():
            first = int(np.flatnonzero(~finite.reshape(len(x), -1).all(axis=1))[0])
            raise DataError(f"{key} has NaN or infinite pixels (first in image {first}); "
                            "remove or fix those images")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            hint = ("they look like 0..255: divide by 255 or store uint8"
                    if lo >= 0 and hi <= 255 else "rescale them to [0, 1]")
            raise DataError(f"{key}: float pixels must be in [0, 1], found {lo:g}..{hi:g}; "
                            f"{hint}")
        x = x.astype(np.float32, copy=False)
    elif x.dtype != np.uint8:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > 255:
            raise DataError(f"{key}: integer pixels must be in 0..255, found {lo}..{hi}; "
                            "scale them to 0..255 (uint8) or to float in [0, 1]")
        x = x.astype(np.uint8)
    return np.ascontiguousarray(x)


def image_layout(shape: tuple[int, ...], key: str, layout: str | None) -> str:
    if layout is not None:
        text = str(layout).strip().upper()
        if text not in LAYOUTS:
            raise DataError(f"layout {layout!r} for {key}; use 'NHWC' (channels last) or "
                            "'NCHW' (channels first)")
        if shape[3 if text == "NHWC" else 1] not in CHANNELS:
            raise DataError(f"{key} has shape {shape}: with layout {text} it would have "
                            f"{shape[3 if text == 'NHWC' else 1]} channels; images have "
                            "1, 3 or 4")
        return text
    first, last = shape[1] in CHANNELS, shape[3] in CHANNELS
    if last and not first:
        return "NHWC"
    if first and not last:
        return "NCHW"
    if first and last:
        square_first, square_last = shape[2] == shape[3], shape[1] == shape[2]
        if square_first != square_last:
            return "NCHW" if square_first else "NHWC"
        raise DataError(f"{key} has shape {shape}: axis 1 and axis 3 could both be the "
                        "channels; say which with layout='NHWC' or 'NCHW' (a 'layout' "
                        "key in the .npz)")
    raise DataError(f"{key} has shape {shape}: neither axis 1 nor axis 3 is a channel count "
                    "(1, 3 or 4); images must be (N, H, W), (N, H, W, C) or (N, C, H, W)")


def check_labels(y: Any, key: str, n: int, images_key: str) -> np.ndarray:
    """Labels as (N,) int64 (>= 0) or a str array, or a DataError naming ``key``."""
    y = as_array(y, key)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = ("; they look one-hot: store y.argmax(axis=1)" if y.ndim == 2 else "")
        raise DataError(f"{key} has shape {y.shape}; labels must be (N,) or (N, 1){hint}")
    if len(y) != n:
        raise DataError(f"{images_key} has {n} images but {key} has {len(y)} labels; "
                        "give one label per image")
    kind = y.dtype.kind
    if kind == "b":
        return y.astype(np.int64)
    if kind in "US":
        names = y.astype(str)
        empty = np.flatnonzero(np.char.str_len(names) == 0)
        if len(empty):
            raise DataError(f"{key}[{int(empty[0])}] is an empty class name")
        return names
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{key}[{i}] = {y[i].item()!r} is not an integer; labels are "
                            "class indices 0..K-1 (or class-name strings)")
        y = y.astype(np.int64)
    elif kind not in "iu":
        raise DataError(f"{key} has dtype {y.dtype}; labels must be integers 0..K-1 or "
                        "class-name strings")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        i = int(np.argmin(y))
        raise DataError(f"{key}[{i}] = {int(y[i])} is negative; labels are class indices "
                        "0..K-1 (or class-name strings)")
    if len(y) and y.max() >= MAX_CLASSES:
        raise DataError(f"{key} has label {int(y.max())}; integer labels are class indices "
                        f"0..K-1 (K < {MAX_CLASSES}): relabel them, or store them as "
                        "strings (class names)")
    return y


def check_class_names(names: Any, key: str = "class_names") -> list[str]:
    """A list of distinct, non-empty strings."""
    if isinstance(names, np.ndarray):
        if names.dtype.kind not in "US" or names.ndim != 1:
            raise DataError(f"{key} must be a 1-D array of strings, got {names.dtype} "
                            f"{names.shape}; e.g. np.array(['cat', 'dog'])")
        names = names.astype(str).tolist()
    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise DataError(f"{key} must be a non-empty list of strings, got {names!r}")
    out = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise DataError(f"{key} must hold non-empty strings, got {name!r}")
        out.append(name)
    twice = sorted({n for n in out if out.count(n) > 1})
    if twice:
        raise DataError(f"{key} lists {twice} more than once; class names must be distinct")
    return out


def check_arrays(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any,
    class_names: Any = None, *, layout: str | None = None, where: str = "",
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Validate and convert a dataset's four arrays: (arrays keyed like
    :class:`LoadedArrays`, class names). ``where`` prefixes messages (a file name)."""
    prefix = f"{where}: " if where else ""
    try:
        xs = {k: check_images(x, k, layout) for k, x in (("x_train", x_train),
                                                          ("x_test", x_test))}
        ys = {k: check_labels(y, k, len(xs[xk]), xk)
              for k, y, xk in (("y_train", y_train, "x_train"), ("y_test", y_test, "x_test"))}
        if xs["x_train"].shape[1:] != xs["x_test"].shape[1:]:
            raise DataError(f"x_train images are (C, H, W) = {xs['x_train'].shape[1:]} but "
                            f"x_test images are {xs['x_test'].shape[1:]}; both splits need "
                            "the same size and channels")
        if xs["x_train"].dtype != xs["x_test"].dtype:  # one uint8, one float32
            xs = {k: (x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x)
                  for k, x in xs.items()}
        names = None if class_names is None else check_class_names(class_names)
        y_train_i, y_test_i, names = _class_indices(ys["y_train"], ys["y_test"], names)
    except DataError as exc:
        raise DataError(f"{prefix}{exc}") from None
    arrays = {"train_images": xs["x_train"], "train_labels": y_train_i,
              "test_images": xs["x_test"], "test_labels": y_test_i}
    return arrays, names


def _class_indices(
    y_train: np.ndarray, y_test: np.ndarray, names: list[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    strings = [y.dtype.kind == "U" for y in (y_train, y_test)]
    if strings[0] != strings[1]:
        raise DataError("y_train and y_test must both be integers or both be class-name "
                        "strings")
    if strings[0]:
        present = sorted(set(y_train.tolist()) | set(y_test.tolist()))
        if names is None:
            names = present
        unknown = [n for n in present if n not in names]
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not in class_names {names}; add them "
                            "or fix the labels")
        index = {n: i for i, n in enumerate(names)}
        return (np.array([index[n] for n in y_train.tolist()], dtype=np.int64),
                np.array([index[n] for n in y_test.tolist()], dtype=np.int64), names)
    top = max(int(y_train.max(initial=0)), int(y_test.max(initial=0)))
    if names is None:
        names = [str(i) for i in range(top + 1)]
    elif top >= len(names):
        which = "y_train" if int(y_train.max(initial=0)) == top else "y_test"
        raise DataError(f"{which} has label {top} but class_names has {len(names)} names "
                        f"(labels 0..{len(names) - 1}); add the missing names or fix the "
                        "labels")
    return y_train, y_test, names


def load_npz(path: Path) -> LoadedArrays:
    """A ``.npz`` dataset (the registry's file loader for ``.npz``)."""
    fix = "save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
    if not path.is_file():
        raise DataError(f"{path}: no such file; {fix}")
    if not zipfile.is_zipfile(path):  # np.load would try it as .npy or a pickle
        raise DataError(f"{path}: not a readable .npz file (not a zip archive); {fix}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [k for k in IMAGE_KEYS if k not in keys]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)} (it has "
                                f"{', '.join(sorted(keys)) or 'none'}); {fix}")
            unknown = sorted(keys - set(IMAGE_KEYS) - set(OPTIONAL_KEYS))
            if unknown:
                hint = (" (a validation split is carved from x_train: merge it into x_train "
                        "and use --val-fraction)" if any("val" in k for k in unknown) else "")
                raise DataError(f"{path}: unknown key(s) {', '.join(unknown)}; valid: "
                                f"{', '.join(IMAGE_KEYS + OPTIONAL_KEYS)}{hint}")
            data = {k: npz[k] for k in sorted(keys)}
    except DataError:
        raise
    except ValueError as exc:  # object arrays need pickle, refused
        raise DataError(f"{path}: {_npz_value_error(exc)}; store numbers as numeric arrays "
                        "and names as np.array([...], dtype=str)") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc}); {fix}") from None
    layout = data.get("layout")
    if layout is not None:
        if layout.dtype.kind not in "US" or layout.size != 1:
            raise DataError(f"{path}: 'layout' must be the string 'NHWC' or 'NCHW'")
        layout = str(layout.reshape(()))
    arrays, names = check_arrays(data["x_train"], data["y_train"], data["x_test"],
                                 data["y_test"], data.get("class_names"), layout=layout,
                                 where=str(path))
    where = str(path.resolve())
    return LoadedArrays(str(path), arrays, names, f"npz file {where}",
                        {path.name: NOT_CHECKED},
                        [{"source": f"npz file {where}", "status": "used"}])


def _npz_value_error(exc: ValueError) -> str:
    text = str(exc)
    if "allow_pickle" in text or "Object arrays" in text:
        return "holds an object (pickled) array, which is never loaded"
    return f"unreadable array ({text})"


def as_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        a = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{what} is not an array ({exc})") from None
    if a.dtype == object:
        raise DataError(f"{what} is an object array (ragged or mixed types); give a "
                        "numeric array (images of one size)")
    return a


def loaded_from_raw(raw: RawDataset) -> LoadedArrays:
    """A RawDataset (from from_arrays / from_dataset / load_raw, or built by hand) as
    read-only arrays for make_task, checked again: it may have been modified since."""
    if not isinstance(raw.name, str) or not raw.name:
        raise DataError(f"RawDataset.name must be a non-empty string, got {raw.name!r}")
    arrays, names = check_arrays(raw.train_images, raw.train_labels, raw.test_images,
                                 raw.test_labels, list(raw.class_names), layout="NCHW",
                                 where=f"dataset {raw.name!r}")
    for key in ARRAY_NAMES:
        arrays[key] = arrays[key].view()  # a read-only view: the caller's tensors stay as
        arrays[key].flags.writeable = False  # they are (make_task copies what it takes)
    return LoadedArrays(raw.name, arrays, names, raw.source, dict(raw.checksums),
                        [dict(t) for t in raw.sources_tried])
