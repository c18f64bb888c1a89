"""Code from a user's own file: ``FILE.py:NAME`` for a teacher or a student.

    factory = UserFactory("my_model.py", "SmallCNN", what="teacher")
    model = factory.build(num_classes=6, image_shape=(1, 28, 28))

**This executes FILE.py** (as ``python FILE.py`` would, minus its ``__main__`` block):
name only files you trust. The file's bytes are hashed first and exactly those bytes
are run, as a new module named ``qdistill_user_<what>_<sha256[:12]>_<n>`` (no
``__pycache__`` is read or written); the file's directory is not put on ``sys.path``.
``NAME`` is an ``nn.Module`` subclass or a factory function, called as
``NAME(num_classes, image_shape)`` (``image_shape`` the task's ``(C, H, W)``), or with
no arguments when its signature has none. Its identity is ``py:NAME@sha256:<hex>``:
editing the file gives another identity, moving it does not.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from .errors import QdistillError

_MODULE_COUNTER = itertools.count()


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def parse_py_spec(text: str, option: str) -> tuple[Path, str] | None:
    """``FILE.py:NAME`` -> (path, NAME); anything else None. ``FILE.py`` without
    ``:NAME`` is refused, naming what the file defines (``option`` names the flag)."""
    head, sep, name = text.rpartition(":")
    if sep and head.lower().endswith(".py"):
        if not name.isidentifier():
            raise QdistillError(f"{option} {text}: NAME must be a Python identifier "
                                f"(FILE.py:NAME), got {name!r}")
        return Path(head).expanduser(), name
    if text.lower().endswith(".py") and not Path(text).expanduser().is_dir():
        path = Path(text).expanduser()
        names = defined_names(path) if path.is_file() else []
        hint = f" ({path.name} defines: {', '.join(names)})" if names else ""
        raise QdistillError(f"{option} {text}: name the class or factory to use as "
                            f"FILE.py:NAME{hint}")
    return None


def defined_names(path: Path) -> list[str]:
    """Top-level class and function names of a file, read without running it."""
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []
    return [n.name for n in tree.body
            if isinstance(n, ast.ClassDef | ast.FunctionDef) and not n.name.startswith("_")]


def read_file(path: Path, what: str) -> bytes:
    """The bytes of ``path``, or a one-line error naming ``what`` it should be."""
    if not path.exists():
        raise QdistillError(f"{what} {path} does not exist")
    if not path.is_file():
        raise QdistillError(f"{what} {path} is not a file")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise QdistillError(f"cannot read the {what} {path}: {exc.strerror}") from None


class UserFactory:
    """``NAME`` from ``FILE.py``, imported once; :meth:`build` makes a fresh module.

    ``what`` ("teacher", "student") only words the messages and the module name.
    """

    def __init__(self, path: str | Path, name: str, what: str):
        self.path, self.name, self.what = Path(path).expanduser(), name, what
        source = read_file(self.path, f"{what} file")
        self.source_sha256 = hashlib.sha256(source).hexdigest()
        self.arch = f"py:{name}@sha256:{self.source_sha256}"
        self.label = f"{self.path.name}:{name}"
        self.module = _import_source(self.path, source, self.source_sha256, what)
        self.obj = self._lookup()

    def _lookup(self) -> Any:
        module, name = self.module, self.name
        if not hasattr(module, name):
            mine = [k for k, v in vars(module).items() if not k.startswith("_") and (
                (isinstance(v, type) and issubclass(v, nn.Module)) or inspect.isfunction(v)
            ) and getattr(v, "__module__", None) == module.__name__]
            defines = (f"it defines: {', '.join(mine)}" if mine
                       else "it defines no nn.Module subclass or function")
            raise QdistillError(f"{self.what} file {self.path} has no {name!r}; {defines}")
        obj = getattr(module, name)
        if isinstance(obj, type):
            if not issubclass(obj, nn.Module):
                raise QdistillError(f"{self.label} is a class but not an nn.Module subclass; "
                                    "name an nn.Module subclass or a factory function")
            return obj
        if isinstance(obj, nn.Module):
            raise QdistillError(f"{self.label} is an nn.Module instance; name its class or a "
                                "factory function that builds it")
        if not callable(obj):
            raise QdistillError(f"{self.label} is of type {type(obj).__name__}, not an "
                                "nn.Module subclass or a factory function")
        return obj

    def build(self, num_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
        """``NAME(num_classes, image_shape)``, or ``NAME()`` when its signature has no
        parameters; checked to be an ``nn.Module`` (on the CPU)."""
        shape = tuple(int(s) for s in image_shape)
        args: tuple[Any, ...] = (num_classes, shape)
        try:
            sig: inspect.Signature | None = inspect.signature(self.obj)
        except (TypeError, ValueError):  # no signature to read (a builtin): pass both
            sig = None
        if sig is not None and not sig.parameters:
            args = ()
        elif sig is not None:
            try:
                sig.bind(*args)
            except TypeError:
                raise QdistillError(
                    f"{self.label}{sig} cannot be called as {self.name}(num_classes, "
                    "image_shape): it must take those two arguments (in that order) or "
                    "none") from None
        call = f"{self.name}({', '.join(repr(a) for a in args)})"
        try:
            model = self.obj(*args)
        except QdistillError:
            raise
        except Exception as exc:  # the user's code: say what it raised, on one line
            raise QdistillError(f"{self.path.name}: {call} raised {type(exc).__name__}: "
                                f"{one_line(exc)}") from exc
        if not isinstance(model, nn.Module):
            raise QdistillError(f"{self.path.name}: {call} returned a {type(model).__name__}, "
                                "not an nn.Module")
        return model.cpu()


def _import_source(path: Path, source: bytes, sha256: str, what: str) -> ModuleType:
    """Execute ``source`` (the bytes of ``path``, already hashed) as a new module."""
    modname = f"qdistill_user_{what}_{sha256[:12]}_{next(_MODULE_COUNTER)}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None:
        raise QdistillError(f"cannot import the {what} file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module  # dataclasses, typing and pickle look modules up here
    try:
        # The hashed bytes themselves, not the file read again (nor a stale .pyc).
        # dont_inherit: none of this module's __future__ flags leak into the user's code.
        code = compile(source, str(path), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 (the user's own file, named by them)
    except BaseException as exc:
        sys.modules.pop(modname, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise QdistillError(f"importing the {what} file {path} failed: "
                            f"{type(exc).__name__}: {one_line(exc)}") from exc
    return module
