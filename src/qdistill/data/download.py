"""Download the gzipped IDX files from the official mirrors, verified, atomically.

Safety properties (each one tested):
- the destination name is one of the fixed constants in ``IDX_FILES``; nothing from the
  URL or the server response ever becomes a path, so nothing lands outside the cache;
- the download goes to a temp file in the destination directory, is gunzipped to a
  second temp file while hashing, and only a content MD5 equal to the published one is
  ``os.replace``d into place; on any failure both temp files are removed;
- sizes are capped (MNIST's largest .gz is 9.9 MB, its largest IDX 47 MB) so a hostile
  or broken server cannot fill the disk.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .core import IDX_FILES, MIRRORS, OFFICIAL_MD5, DataError

log = logging.getLogger(__name__)

TIMEOUT_S = 30.0
MAX_DOWNLOAD_BYTES = 64 << 20  # compressed
MAX_UNCOMPRESSED_BYTES = 256 << 20
_CHUNK = 1 << 20

Opener = Callable[..., Any]  # urllib.request.urlopen-like: (url, timeout=...) -> response


def download_file(
    urls: Sequence[str],
    dest: Path,
    md5: str,
    *,
    timeout: float = TIMEOUT_S,
    opener: Opener | None = None,
) -> Path:
    """Fetch a .gz from the first working URL, gunzip it to ``dest``, verify its MD5.

    ``dest.name`` must be one of ``IDX_FILES``. Each URL is tried in order; a network
    error, a bad gzip or a wrong MD5 moves on to the next one. Raises DataError naming
    every failure when none worked; ``dest`` is then absent and no temp file remains.
    """
    if dest.name not in IDX_FILES:
        raise ValueError(f"refusing to write {dest.name!r}: not one of {IDX_FILES}")
    open_url = opener or urllib.request.urlopen
    failures: list[str] = []
    for url in urls:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _fetch_verified(open_url, url, dest, md5, timeout)
        except _AttemptFailed as exc:
            log.warning("%s", exc)
            failures.append(str(exc))
            continue
        except OSError as exc:  # the cache itself is not writable / disk full
            raise DataError(f"{dest.parent}: cannot write the download ({exc}); set "
                            "QDISTILL_CACHE_DIR to a writable directory") from None
        log.info("downloaded %s from %s (MD5 ok)", dest.name, url)
        return dest
    raise DataError(
        f"{dest.name}: download failed from every mirror: {'; '.join(failures)}; check the "
        "network, or get the files yourself and pass --data-dir"
    )


def download_idx_files(
    name: str,
    dest_dir: Path,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = TIMEOUT_S,
    opener: Opener | None = None,
) -> dict[str, Path]:
    """The four verified IDX files of ``name`` in ``dest_dir``, downloading what is missing.

    A file already there is reused only if its MD5 is the official one.
    """
    bases = tuple(mirrors) if mirrors is not None else MIRRORS[name]
    paths: dict[str, Path] = {}
    for file_name in IDX_FILES:
        dest = dest_dir / file_name
        expected = OFFICIAL_MD5[name][file_name]
        if dest.is_file() and _md5_of_file(dest) == expected:
            paths[file_name] = dest
            continue
        urls = [f"{base}{file_name}.gz" for base in bases]
        paths[file_name] = download_file(urls, dest, expected, timeout=timeout, opener=opener)
    return paths


class _AttemptFailed(Exception):
    """One URL did not give a verified file (internal; turned into DataError)."""


def _fetch_verified(open_url: Opener, url: str, dest: Path, md5: str, timeout: float) -> None:
    gz_tmp = _temp_in(dest.parent, dest.name, ".gz.part")
    raw_tmp = _temp_in(dest.parent, dest.name, ".part")
    try:
        try:
            with open_url(url, timeout=timeout) as response, open(gz_tmp, "wb") as out:
                total = 0
                while chunk := response.read(_CHUNK):
                    total += len(chunk)
                    if total > MAX_DOWNLOAD_BYTES:
                        raise _AttemptFailed(f"{url}: larger than {MAX_DOWNLOAD_BYTES} bytes")
                    out.write(chunk)
        except _AttemptFailed:
            raise
        except Exception as exc:  # URLError, HTTPError, timeouts, ValueError for bad URL
            raise _AttemptFailed(f"{url}: {type(exc).__name__}: {exc}") from None
        digest = hashlib.md5()
        try:
            with gzip.open(gz_tmp, "rb") as src, open(raw_tmp, "wb") as out:
                total = 0
                while chunk := src.read(_CHUNK):
                    total += len(chunk)
                    if total > MAX_UNCOMPRESSED_BYTES:
                        raise _AttemptFailed(f"{url}: more than {MAX_UNCOMPRESSED_BYTES} "
                                             "bytes uncompressed")
                    digest.update(chunk)
                    out.write(chunk)
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
            raise _AttemptFailed(f"{url}: bad gzip ({exc})") from None
        if digest.hexdigest() != md5:
            raise _AttemptFailed(
                f"{url}: MD5 of the content {digest.hexdigest()} != official {md5}"
            )
        os.replace(raw_tmp, dest)
    finally:
        for tmp in (gz_tmp, raw_tmp):
            tmp.unlink(missing_ok=True)


def _temp_in(directory: Path, stem: str, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(dir=directory, prefix=f".{stem}.", suffix=suffix)
    os.close(fd)
    return Path(name)


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
