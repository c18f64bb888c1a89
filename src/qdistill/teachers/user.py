"""Your own teacher: an ``nn.Module`` class or factory in a ``.py`` file, or an ONNX model.

Your own teacher
----------------
Besides ``none``, the built-in names (``lenet``, ``alexnet``, ``ensemble``, ``mlp``) and
a teacher run directory, ``qdistill distill --teacher`` takes two more forms::

    qdistill distill --teacher my_teacher.py:SmallCNN --teacher-weights cnn.safetensors ...
    qdistill distill --teacher my_teacher.py:SmallCNN ...         # trained, then cached
    qdistill distill --teacher model.onnx ...                     # pip install 'qdistill[onnx]'

``FILE.py:NAME``: ``NAME`` is an ``nn.Module`` subclass or a factory function defined in
``FILE.py``. **This executes FILE.py** (like ``python FILE.py`` would, minus the
``__main__`` block): name only files you trust. The file is imported with
``importlib.util.spec_from_file_location`` under a new module name of its own
(``qdistill_user_teacher_<sha256[:12]>_<n>``), from the very bytes that were hashed (no
``__pycache__`` is read or written); the file's directory is *not* put on ``sys.path``,
so a sibling module it imports must be importable already (``PYTHONPATH``). ``NAME`` is
called with ``(num_classes, image_shape)`` positionally, ``image_shape`` the task's
``(C, H, W)`` tuple of ints (``(1, 8, 8)`` for digits), unless its signature has no
parameters at all (``inspect.signature(NAME)``, ``self`` excluded), in which case it is
called with none; any other signature that cannot take those two arguments is refused.
The result must be an ``nn.Module`` with parameters mapping ``(B, C, H, W)`` floats in
[0, 1] to ``(B, K)`` logits over the task's classes in the task's order
(:func:`qdistill.teachers.models.check_teacher` runs it on two blank images first).

* With ``--teacher-weights W`` (``.safetensors``; or a ``.pt``/``.pth`` state dict,
  read with ``torch.load(weights_only=True)``: a pickle that holds anything but
  tensors and plain containers is refused, never unpickled) the weights are loaded
  strictly (every missing or unexpected key and every shape mismatch is listed) and the
  teacher is used frozen, as is. Its soft targets are cached under
  ``weights_sha256`` = SHA-256 of the state dict (names and bytes, as
  ``student_runs.user_teacher_meta``) followed by the module's identity
  ``py:NAME@sha256:<SHA-256 of FILE.py>``: the same weights under an edited
  ``forward`` are another teacher.
* Without weights, ``NAME`` is trained with the built-in teachers' protocol
  (``runs.train_teacher``'s: same ``fit``, ``--teacher-epochs``, ``kd.teacher_seed``,
  batch 128, the whole training split of the task's classes) and cached under
  ``<cache>/teachers/py-NAME-<dataset>-<classes>-<key>``, the key that of a
  ``TeacherConfig`` whose ``arch`` is ``py:NAME@sha256:<SHA-256 of FILE.py>`` and of
  the data's content: editing the file (or naming another class) trains another
  teacher; moving or renaming the file does not. Its logits are cached under the
  checkpoint's weights hash, like a built-in teacher's.

``FILE.onnx``: run with onnxruntime on CPU (optional: ``pip install 'qdistill[onnx]'``)
inside :class:`OnnxTeacher`, an ``nn.Module`` whose ``forward`` takes ``(B, C, H, W)``
float tensors in [0, 1] and returns ``(B, K)`` float32 logits on the input's device
(no autograd: a frozen teacher needs only its forward pass). The model must have one
input of rank 4 whose declared ``C, H, W`` (where not symbolic) are the task's; its batch
dimension may be dynamic or fixed (a fixed batch of N runs N images at a time, the last
chunk padded); its first output must be ``(batch, K)``. Its soft targets are cached
under the SHA-256 of the ``.onnx`` file's bytes (the session is built from those bytes:
weights kept in external data files are not supported).

Every user teacher is frozen, checked with ``check_teacher`` before any slow work, and
recorded in the student run: ``config.kd.teacher`` / ``config.kd.teacher_weights`` hold
the spec as given and ``meta["teacher"]`` its ``arch`` (``py:NAME@sha256:...`` or
``onnx:FILE.onnx``) and ``weights_sha256`` (the cache identity above).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TeacherConfig, validate
from ..data import cache_dir
from ..errors import CheckpointError, QdistillError
from ..training import checkpoint
from ..training.fit import fit, seed_everything
from ..training.tasks import build_task
from ..user_code import UserFactory, one_line, parse_py_spec, read_file
from .cache import teacher_key, teacher_meta
from .models import check_teacher

log = logging.getLogger(__name__)

_MODULE_COUNTER = itertools.count()
_LIST_AT_MOST = 8  # keys named in a message before "... (N more)"


@dataclasses.dataclass(frozen=True)
class TeacherSpec:
    """A parsed user-teacher spec: ``kind`` "py" (``path``, ``name``) or "onnx"."""

    kind: str
    path: Path
    name: str | None = None
    text: str = ""


def parse_teacher_spec(text: str) -> TeacherSpec | None:
    """``FILE.py:NAME`` -> py spec, ``FILE.onnx`` -> onnx spec, anything else None.

    ``FILE.py`` without ``:NAME`` is refused (the error says which names to choose
    from, when the file exists). A directory whose name ends in ``.onnx`` is left to
    the run-directory form.
    """
    py = parse_py_spec(text, "--teacher")
    if py is not None:
        return TeacherSpec("py", py[0], py[1], text)
    path = Path(text).expanduser()
    if text.lower().endswith(".onnx") and not path.is_dir():
        return TeacherSpec("onnx", path, None, text)
    return None


# --- FILE.py:NAME ----------------------------------------------------------------------


class PyTeacher(UserFactory):
    """``NAME`` from ``FILE.py`` as a teacher (see :mod:`qdistill.user_code`)."""

    def __init__(self, path: str | Path, name: str):
        super().__init__(path, name, what="teacher")

    def build(self, num_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
        """The teacher module, checked to have parameters (something to train or load)."""
        model = super().build(num_classes, image_shape)
        if next(iter(model.parameters()), None) is None:
            raise QdistillError(f"{self.path.name}: {self.name}(...) has no parameters; a "
                                "teacher is a trainable (or trained) nn.Module")
        model.teacher_label = self.label  # named so in check_teacher's messages
        return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``.pt``/``.pth`` state dict read with
    ``torch.load(weights_only=True)`` (a pickle that needs anything more is refused)."""
    p = Path(path).expanduser()
    what = "--teacher-weights"
    suffix = p.suffix.lower()
    if suffix not in (".safetensors", ".pt", ".pth"):
        raise QdistillError(f"{what} {p}: expected a .safetensors file or a .pt/.pth state "
                            "dict")
    blob = read_file(p, f"{what} file")
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load as st_load
        try:
            return dict(st_load(blob))
        except (SafetensorError, ValueError, RuntimeError) as exc:
            raise QdistillError(f"{what} {p} is not a valid safetensors file: "
                                f"{one_line(exc)}") from exc
    import io
    try:
        obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        why = f" (it needs {found.group(1)})" if found else ""
        raise QdistillError(
            f"{what} {p} is not a weights-only file{why}: qdistill reads .pt files with "
            "torch.load(weights_only=True) and never unpickles code; save "
            "model.state_dict() with safetensors.torch.save_file (or torch.save)") from None
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise QdistillError(f"{what} {p} cannot be read by torch.load(weights_only=True): "
                            f"{type(exc).__name__}: {one_line(exc)}") from None
    if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        kind = type(obj).__name__ if not isinstance(obj, dict) else \
            "dict whose values are not all tensors"
        raise QdistillError(f"{what} {p} holds a {kind}, not a state dict (name -> "
                            "tensor); save model.state_dict()")
    return obj


def _names(keys: list[str]) -> str:
    more = f", ... ({len(keys) - _LIST_AT_MOST} more)" if len(keys) > _LIST_AT_MOST else ""
    return ", ".join(keys[:_LIST_AT_MOST]) + more


def load_weights_strict(model: nn.Module, tensors: dict[str, torch.Tensor], where: str,
                        label: str) -> None:
    """``model.load_state_dict(tensors, strict=True)``, refused with one line naming
    every missing and unexpected key and every shape mismatch first."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k} {tuple(tensors[k].shape)} (model {tuple(own[k].shape)})"
              for k in sorted(set(own) & set(tensors)) if tensors[k].shape != own[k].shape]
    problems = [f"{what} {_names(keys)}" for what, keys in (
        ("missing keys:", missing), ("unexpected keys:", unexpected),
        ("shape mismatches:", shapes)) if keys]
    if problems:
        raise QdistillError(f"--teacher-weights {where} do not fit {label}: "
                            f"{'; '.join(problems)}")
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise QdistillError(f"--teacher-weights {where} do not fit {label}: "
                            f"{one_line(exc)}") from exc


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode, no gradients: how every teacher is used."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def py_teacher_with_weights(py: PyTeacher, weights: str | Path, num_classes: int,
                            image_shape: tuple[int, ...]) -> nn.Module:
    """``NAME`` built for the task, its weights loaded strictly, frozen."""
    tensors = read_state_dict(weights)
    model = py.build(num_classes, image_shape)
    load_weights_strict(model, tensors, str(weights), py.label)
    return frozen(model)


def py_teacher_dir(py: PyTeacher, cfg: TeacherConfig, key: str) -> Path:
    classes = (cfg.data.classes or "all").replace(",", "_")
    return cache_dir() / "teachers" / f"py-{py.name}-{cfg.data.dataset}-{classes}-{key}"


def get_py_teacher(py: PyTeacher, cfg: TeacherConfig) -> tuple[nn.Module, dict[str, Any]]:
    """``NAME`` trained with the teacher protocol ``cfg`` (``cfg.arch`` must be
    ``py.arch``), or loaded from the cache when it was trained before from the same
    file content on the same data: ``runs.get_teacher`` for a user's module."""
    if cfg.arch != py.arch:
        raise ValueError(f"TeacherConfig.arch {cfg.arch!r} is not {py.arch!r}")
    validate(cfg)
    task = build_task(cfg.data, cfg.train.seed)
    key = teacher_key(cfg, task)
    out = py_teacher_dir(py, cfg, key)
    best = out / "best"
    if not checkpoint.exists(best):
        checkpoint.check_writable_dir(out, "teacher run directory")  # before slow work
        seed_everything(cfg.train.seed)  # initial weights: same seed, same teacher
        model = py.build(task.num_classes, task.image_shape)
        check_teacher(model, task.image_shape, task.num_classes)  # before any file
        fit(model, task.train, task.val, task.test, cfg.train, out_dir=out,
            run_meta=teacher_meta(cfg, task, model), desc=f"teacher {py.label}")
        cached = False
    else:
        cached = True
    tensors, meta = checkpoint.load(best, {"kind": "teacher", "config_key": key,
                                           "data_fingerprint": task.fingerprint()})
    model = py.build(meta["num_classes"], tuple(meta["image_shape"]))
    try:
        checkpoint.load_into(model, tensors, str(best))
    except CheckpointError as exc:  # cannot happen for an unchanged file: same hash
        raise QdistillError(f"{exc}; delete {out} to retrain") from exc
    if cached:
        log.info(f"teacher {py.label}: cached in {out} (test acc "
                 f"{meta['metrics']['test_acc']:.4f}; same file content sha256 "
                 f"{py.source_sha256[:12]}, same data, fingerprint {task.fingerprint()[:12]})")
    return frozen(model), meta


# --- FILE.onnx -------------------------------------------------------------------------

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64,
                "tensor(float16)": np.float16}


class OnnxTeacher(nn.Module):
    """A frozen ONNX classifier as a teacher: ``(B, C, H, W)`` floats in [0, 1] ->
    ``(B, K)`` float32 logits on the input's device, computed by onnxruntime on CPU
    (no autograd). Build it with :func:`load_onnx_teacher`.

    It has one empty parameter, ``device_anchor``, only so that code which asks a model
    for its device (``next(model.parameters()).device``) finds the CPU.
    """

    def __init__(self, path: Path, session: Any, sha256: str):
        super().__init__()
        self.device_anchor = nn.Parameter(torch.empty(0), requires_grad=False)
        self.path, self.sha256 = path, sha256
        self.arch = f"onnx:{path.name}"
        self.teacher_label = path.name
        self._session = session
        inp, out = session.get_inputs()[0], session.get_outputs()[0]
        self._input, self._output = inp.name, out.name
        self._dtype = _ONNX_DTYPES[inp.type]
        b = inp.shape[0] if inp.shape else None
        self._fixed_batch = b if isinstance(b, int) and b > 0 else None

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy().astype(self._dtype, copy=False))
        n, step = len(arr), self._fixed_batch or max(1, len(arr))
        outs = []
        for i in range(0, max(n, 1), step):
            chunk = arr[i:i + step]
            if self._fixed_batch and len(chunk) < step:  # pad the last chunk
                pad = np.zeros((step - len(chunk), *arr.shape[1:]), dtype=arr.dtype)
                chunk = np.concatenate([chunk, pad])
            res = self._session.run([self._output], {self._input: chunk})[0]
            outs.append(np.asarray(res)[:min(step, n - i)])
        logits = np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
        return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, sha256={self.sha256[:12]}"


def _fmt_shape(shape: Any) -> str:
    dims = ["?" if d is None else str(d) for d in (shape or [])]
    return f"({', '.join(dims)})"


def load_onnx_teacher(path: str | Path, image_shape: tuple[int, ...], num_classes: int
                      ) -> OnnxTeacher:
    """The ONNX model at ``path`` as a frozen teacher for images ``image_shape`` (C, H,
    W) and ``num_classes`` classes; its declared shapes are checked first, then
    :func:`check_teacher` runs it."""
    p = Path(path).expanduser()
    blob = read_file(p, "ONNX teacher")
    try:
        import onnxruntime as ort
    except ImportError:
        raise QdistillError(f"--teacher {p}: ONNX teachers need onnxruntime; "
                            "pip install 'qdistill[onnx]'") from None
    shape = tuple(int(s) for s in image_shape)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, torch.get_num_threads())
    opts.log_severity_level = 3  # errors only: no warnings on stderr
    try:
        session = ort.InferenceSession(blob, sess_options=opts,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise QdistillError(f"cannot load the ONNX teacher {p}: {one_line(exc)}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    want = f"(batch, {', '.join(map(str, shape))})"
    if len(inputs) != 1:
        raise QdistillError(f"ONNX teacher {p} has {len(inputs)} inputs "
                            f"({', '.join(i.name for i in inputs)}); a teacher takes one "
                            f"image input {want}")
    inp = inputs[0]
    declared = list(inp.shape or [])
    fixed = [(d, s) for d, s in zip(declared[1:], shape, strict=False) if isinstance(d, int)]
    if len(declared) != 4 or any(d != s for d, s in fixed):
        raise QdistillError(f"ONNX teacher {p} takes input {inp.name!r} of shape "
                            f"{_fmt_shape(declared)} but the task's images are {want} "
                            "(C, H, W); export it for this image shape")
    if inp.type not in _ONNX_DTYPES:
        raise QdistillError(f"ONNX teacher {p} takes input {inp.name!r} of type {inp.type}; "
                            "a teacher takes float images in [0, 1] (float, double or "
                            "float16)")
    out_shape = list(outputs[0].shape or [])
    if out_shape and (len(out_shape) != 2 or (
            isinstance(out_shape[1], int) and out_shape[1] != num_classes)):
        raise QdistillError(f"ONNX teacher {p} returns {outputs[0].name!r} of shape "
                            f"{_fmt_shape(out_shape)} but the task has {num_classes} classes: "
                            f"a teacher returns logits (batch, {num_classes})")
    model = OnnxTeacher(p, session, hashlib.sha256(blob).hexdigest())
    check_teacher(model, shape, num_classes)
    return frozen(model)
