"""``qdistill cache list`` / ``qdistill cache clear``: what qdistill keeps on disk.

    qdistill cache list                    # each kind: entries and size; the total
    qdistill cache clear logits --yes      # teachers | logits | data | all

Everything lives under ``qdistill.data.cache_dir()`` ($QDISTILL_CACHE_DIR, else
$XDG_CACHE_HOME/qdistill, else ~/.cache/qdistill):

- ``teachers/``: trained teachers, one run directory each (retrained on demand);
- ``teacher_logits/``: a teacher's logits on a student's training images;
- ``<dataset>/`` (``mnist``, ``fashion-mnist``, ``cifar10``): decoded arrays and downloads;
  ``image-folders/``: decoded image-folder datasets; ``arrays/``: arrays given in Python
  (``qdistill.distill(data=...)``). These three are the kind ``data``.
- ``native/``: the lockstep kernel compiled for this CPU (``qdistill.lockstep.native``).

Only these are listed as their kind and removed by ``clear``; anything else in the
directory is listed as ``other`` and never removed. Everything here is rebuilt when
needed (a cleared MNIST download is fetched again, unless offline).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import QdistillError

KINDS = ("teachers", "logits", "data", "native")
_DIRS = {"teachers": "teachers", "teacher_logits": "logits", "native": "native",
         "image-folders": "data",
         "arrays": "data"}


def _kind(name: str) -> str:
    from ..data import DATASETS
    return _DIRS.get(name) or ("data" if name in DATASETS else "other")


def _walk(path: Path) -> tuple[int, int, int]:
    """(files, bytes, first-level entries) under ``path``; links are not followed."""
    if path.is_symlink() or path.is_file():
        return 1, path.lstat().st_size, 1
    files = size = 0
    for parent, _dirs, names in os.walk(path):
        for name in names:
            files += 1
            size += (Path(parent) / name).lstat().st_size
    return files, size, sum(1 for _ in path.iterdir())


def entries() -> list[dict[str, Any]]:
    """One row per top-level item of the cache directory: name, kind, path, count (teachers:
    run directories; logits: cached logit sets; data: files), bytes."""
    from ..data import cache_dir
    root = cache_dir()
    rows = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        kind = _kind(path.name)
        files, size, first = _walk(path)
        if kind == "teachers":
            count = first
        elif kind == "logits":
            count = sum(1 for p in path.glob("*.safetensors")) if path.is_dir() else files
        else:
            count = files
        rows.append({"name": path.name, "kind": kind, "path": str(path), "count": count,
                     "bytes": size})
    return rows


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


def cmd_cache_list(args: argparse.Namespace) -> int:
    from ..data import cache_dir
    rows = entries()
    total = sum(r["bytes"] for r in rows)
    if args.json:
        print(json.dumps({"cache_dir": str(cache_dir()), "entries": rows,
                          "total_bytes": total}, indent=2))
        return 0
    print(f"cache: {cache_dir()}" + ("" if cache_dir().is_dir() else " (empty: not created)"))
    if rows:
        width = max(len(f"{r['kind']}: {r['name']}") for r in rows)
        print(f"{'what':<{width}}  {'entries':>7}  {'size':>9}")
        for r in rows:
            what = r["kind"] if r["kind"] in ("teachers", "logits", "native") else \
                f"{r['kind']}: {r['name']}"
            print(f"{what:<{width}}  {r['count']:>7}  {human(r['bytes']):>9}")
    print(f"total: {human(total)}")
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    from ..data import cache_dir
    kinds = KINDS if args.what == "all" else (args.what,)
    rows = [r for r in entries() if r["kind"] in kinds]
    if not rows:
        print(f"nothing to remove: no {args.what} cache in {cache_dir()}")
        return 0
    total = sum(r["bytes"] for r in rows)
    what = (f"{len(rows)} item(s) of the {args.what} cache in {cache_dir()} "
            f"({human(total)})")
    if not args.yes:
        if not sys.stdin.isatty():
            raise QdistillError(f"cache clear would remove {what}; add --yes (stdin is not "
                                "a terminal, so it cannot ask)")
        answer = input(f"remove {what}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing removed")
            return 1
    for r in rows:
        path = Path(r["path"])
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        print(f"removed {path} ({r['count']} entries, {human(r['bytes'])})")
    print(f"removed {human(total)} in total")
    return 0


def add_cache_parser(sub: Any, json_option: Callable[[argparse.ArgumentParser], None]
                     ) -> None:
    """``qdistill cache list|clear`` on the subcommand table ``sub``."""
    cache = sub.add_parser(
        "cache", help="list or clear qdistill's caches (teachers, logits, data, native)",
        description="qdistill's caches, under $QDISTILL_CACHE_DIR (else "
                    "$XDG_CACHE_HOME/qdistill, else ~/.cache/qdistill): teachers/ (trained "
                    "teachers), teacher_logits/ (their logits on a student's images), "
                    "data (decoded datasets and downloads, image-folders/, arrays/) and "
                    "native/ (the lockstep kernel compiled for this CPU).")
    csub = cache.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)
    lst = csub.add_parser("list", help="each cache: entries and size; the total")
    json_option(lst)
    lst.set_defaults(func=cmd_cache_list)
    clear = csub.add_parser(
        "clear", help="remove a cache (rebuilt when needed)",
        description="Remove the teachers, logits, data or native cache, or all four; anything "
                    "else "
                    "in the cache directory is kept. Prints what it removed.")
    clear.add_argument("what", choices=[*KINDS, "all"],
                       help="teachers (trained teachers) | logits (teacher logits) | data "
                            "(decoded datasets, downloads, image folders, arrays) | native "
                            "(the compiled lockstep kernel) | all")
    clear.add_argument("--yes", "-y", action="store_true",
                       help="do not ask (required when stdin is not a terminal)")
    clear.set_defaults(func=cmd_cache_clear)
