"""An image folder as a dataset: ``--dataset DIR``.

Layout (the torchvision ``ImageFolder`` one, once per split)::

    DIR/train/<class>/*.png|jpg|jpeg|bmp
    DIR/test/<class>/*.png|jpg|jpeg|bmp

- Classes are the sorted folder names (class 0 is the first); train and test must have
  the same set, and every class folder at least one image. Names starting with "." are
  ignored (``.ipynb_checkpoints``), and so are files with other suffixes.
- Images are read with Pillow: grayscale ("L", one channel) when every image is
  single-channel ("1", "L", "LA"), else all as "RGB" (3 channels; alpha is dropped).
  All images must have the same size: the error names the first one that differs and
  says to resize. Pixels are uint8 0..255.
- Dataset order (what ``--train-per-class N`` takes the first N of): class by class,
  file names sorted within each class.
- The decoded arrays are cached under ``cache_dir()/image-folders/<sha256>.npz``, keyed
  by the content: a SHA-256 of every file's split, class, name and bytes (so renamed,
  added or edited files are decoded again, and an unchanged folder anywhere on disk is
  read from the cache). The files are still read to hash them (~0.3 s per 100 MB); the
  decoding (~1 ms per JPEG) is what is saved. A cache that cannot be written or read is
  ignored, never an error.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from .core import DataError, LoadedArrays, cache_dir

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")
SPLITS: tuple[str, ...] = ("train", "test")
GRAY_MODES = frozenset({"1", "L", "LA"})
COLOR_MODES = frozenset({"RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"})
CACHE_FORMAT = 1
NOT_CHECKED = "not checked: your own data (runs record its content as data_fingerprint)"


def list_images(root: Path) -> tuple[list[str], dict[str, list[tuple[int, Path]]]]:
    """(class names, split -> [(class index, file)] in dataset order), or a DataError."""
    fix = (f"expected {root}/train/<class>/*.png (or .jpg, .jpeg, .bmp) and "
           f"{root}/test/<class>/...")
    classes: dict[str, list[str]] = {}
    for split in SPLITS:
        d = root / split
        if not d.is_dir():
            raise DataError(f"{root}: no {split}/ folder; {fix}")
        names = sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
        stray = sorted(p.name for p in d.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if stray:
            raise DataError(f"{d / stray[0]}: images go in one folder per class "
                            f"({d}/<class>/{stray[0]}); {fix}")
        if not names:
            raise DataError(f"{d}: no class folders; {fix}")
        classes[split] = names
    if classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        parts = [f"only in train/: {', '.join(only_train)}" if only_train else "",
                 f"only in test/: {', '.join(only_test)}" if only_test else ""]
        raise DataError(f"{root}: train/ and test/ must have the same class folders "
                        f"({'; '.join(p for p in parts if p)}); add or remove folders")
    names = classes["train"]
    files: dict[str, list[tuple[int, Path]]] = {}
    for split in SPLITS:
        files[split] = []
        for c, name in enumerate(names):
            d = root / split / name
            found = sorted((p for p in d.iterdir() if p.is_file()
                            and not p.name.startswith(".")
                            and p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.name)
            if not found:
                raise DataError(f"{d}: no {'/'.join(IMAGE_SUFFIXES)} images; every class "
                                "needs images in both train/ and test/")
            files[split].extend((c, p) for p in found)
    return names, files


def load_image_folder(root: Path) -> LoadedArrays:
    """Both splits of an image folder (the registry's loader for a directory)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise DataError("reading an image folder needs Pillow: pip install pillow") from None
    names, files = list_images(root)
    digest = hashlib.sha256(f"qdistill image folder v{CACHE_FORMAT}".encode())
    first: tuple[Path, tuple[int, int]] | None = None
    gray = True
    for split in SPLITS:
        for c, path in files[split]:
            data = _read(path)
            digest.update(f"|{split}/{names[c]}/{path.name}|{len(data)}|".encode())
            digest.update(data)
            try:
                with Image.open(io.BytesIO(data)) as im:
                    size, mode = im.size, im.mode
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise DataError(f"{path}: not a readable image ({exc}); delete or replace "
                                "it") from None
            if mode not in GRAY_MODES and mode not in COLOR_MODES:
                raise DataError(f"{path}: image mode {mode!r} is not supported (8-bit "
                                "grayscale or colour only); convert it, e.g. "
                                "Image.open(p).convert('L').save(p)")
            gray = gray and mode in GRAY_MODES
            if first is None:
                first = (path, size)
            elif size != first[1]:
                w, h = first[1]
                raise DataError(f"{path}: {size[0]}x{size[1]} pixels, but {first[0]} is "
                                f"{w}x{h}; all images must have the same size: resize them "
                                f"first (e.g. Image.open(p).resize(({w}, {h})))")
    key = digest.hexdigest()
    mode = "L" if gray else "RGB"
    arrays = _cached(key, len(names))
    status = "read from the cache of decoded images"
    if arrays is None:
        arrays, status = {}, "decoded"
        for split in SPLITS:
            images = []
            for _, path in files[split]:
                try:
                    with Image.open(io.BytesIO(_read(path))) as im:
                        a = np.asarray(im.convert(mode), dtype=np.uint8)
                except (OSError, ValueError) as exc:
                    raise DataError(f"{path}: cannot decode ({exc}); delete or replace "
                                    "it") from None
                images.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
            arrays[f"{split}_images"] = np.ascontiguousarray(np.stack(images))
            arrays[f"{split}_labels"] = np.array([c for c, _ in files[split]], dtype=np.int64)
        _save(key, arrays)
    where = str(root.resolve())
    n = sum(len(v) for v in files.values())
    source = f"image folder {where} ({n} images, mode {mode})"
    return LoadedArrays(str(root), arrays, list(names), source,
                        {"images": NOT_CHECKED},
                        [{"source": f"image folder {where}", "status": f"used ({status})"}])


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _cache_path(key: str) -> Path:
    return cache_dir() / "image-folders" / f"{key}.npz"


def _cached(key: str, num_classes: int) -> dict[str, np.ndarray] | None:
    """The decoded arrays cached under ``key``, or None (absent or unusable: ignored)."""
    path = _cache_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("train_images", "train_labels", "test_images",
                                          "test_labels")}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        log.warning("ignoring unreadable image-folder cache %s (%s)", path, exc)
        return None
    ok = all(arrays[f"{s}_images"].dtype == np.uint8 and arrays[f"{s}_images"].ndim == 4
             and arrays[f"{s}_labels"].shape == (len(arrays[f"{s}_images"]),)
             and arrays[f"{s}_labels"].dtype == np.int64
             and 0 <= arrays[f"{s}_labels"].min() <= arrays[f"{s}_labels"].max() < num_classes
             for s in SPLITS)
    if not ok:
        log.warning("ignoring malformed image-folder cache %s", path)
        return None
    return arrays


def _save(key: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically; failing only costs speed next time (a warning)."""
    path = _cache_path(key)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not cache the decoded image folder in %s (%s); continuing "
                    "without", path, exc)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
