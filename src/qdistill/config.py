"""Run configuration: plain dataclasses, YAML via ``yaml.safe_load``, dotted overrides.

Defaults sit next to the field they configure. Loading is strict: an unknown key or a
value of the wrong type is a :class:`ConfigError` naming the key, so a typo in a YAML
file never silently falls back to a default.

    cfg = load_config(TeacherConfig, "teacher.yaml", overrides=["train.epochs=3"])
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric option: ``lo <= x <= hi`` (``lo < x`` when
    ``lo_open``); ``None`` = unbounded on that side. Floats must also be finite."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False

    def __contains__(self, x: float) -> bool:
        if isinstance(x, float) and not math.isfinite(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return self.hi is None or x <= self.hi

    def text(self) -> str:
        """"1..100000", ">= 0", "> 0"."""
        lo = None if self.lo is None else f"{'>' if self.lo_open else '>='} {_n(self.lo)}"
        hi = None if self.hi is None else f"<= {_n(self.hi)}"
        if lo and hi and not self.lo_open:
            return f"{_n(self.lo)}..{_n(self.hi)}"
        return " and ".join(t for t in (lo, hi) if t) or "any"


def _n(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def num(default: Any, lo: float | None = None, hi: float | None = None,
        lo_open: bool = False) -> Any:
    """A numeric config field with its valid range (checked on load, shown in --help)."""
    return field(default=default, metadata={"range": Range(lo, hi, lo_open)})


SEEDS = (0, 2**32 - 1)  # numpy's seed range
# Shots are drawn one by one (quantum.measure.sample_counts): 10^6 shots on the 900 test
# images of a paper-v1 task already take about a minute on one core, and at 10^6 the
# sampled frequencies are within ~0.001 of the exact probabilities (use exact mode).
MAX_SHOTS = 10**6
MAX_EPOCHS = 100_000
MAX_BATCH = 2**24


@dataclass
class DataConfig:
    dataset: str = "mnist"
    classes: str | None = "0-5"  # "0-5", "0-7", "0,3,7"; None = every class
    train_per_class: int | None = num(None, 1)  # the paper's students: first 150 per class
    test_per_class: int | None = num(None, 1)
    # validation carved from the training split (model selection); 0 = none (last epoch)
    val_fraction: float = field(default=0.1, metadata={"range": Range(0.0, 0.9)})
    val_per_class: int | None = num(None, 0)  # with train_per_class: validation per class
    data_dir: str | None = None  # a directory of IDX files (or CIFAR-10 batches)
    # students: a transfer set the teacher labels softly, the labels hidden from the
    # student: "unlabelled" (every training image left after the labelled and validation
    # ones) or "unlabelled:N" (N per class); None = none
    transfer: str | None = None


@dataclass
class TrainConfig:
    epochs: int = num(10, 1, MAX_EPOCHS)  # paper: 10 for teachers and students
    batch_size: int = num(128, 1, MAX_BATCH)  # paper: 128 for teachers, 1 for students
    lr: float = num(1e-3, 0.0, None, lo_open=True)  # paper: Adam 1e-3
    weight_decay: float = num(0.0, 0.0)
    seed: int = num(0, *SEEDS)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_batch_size: int = num(1024, 1, MAX_BATCH)  # evaluation only; no effect on results
    deterministic: bool = False  # torch.use_deterministic_algorithms (matters on CUDA)


@dataclass
class TeacherConfig:
    arch: str = "lenet"  # lenet | alexnet | ensemble | mlp
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class StudentConfig:
    name: str = "paper-v1"  # paper-v1 | paper-v2 | quantum
    # at least log2(classes); the upper limit is the memory a statevector needs
    qubits: int = num(3, 1, 40)
    shots: int | None = num(None, 1, MAX_SHOTS)  # None = exact; paper: 5000/3000/2000
    # Options of some students only. None = the student's own default; giving one to a
    # student that does not take it is an error. Which student takes which, and the
    # defaults: qdistill.students.STUDENTS (README, "Students").
    head: str | None = None  # paper-v1 readout: logprob | paper (sigmoid/1-sigmoid)
    angles: str | None = None  # paper-v1: pi (the paper's pi*tanh) | half-pi (pi/2*tanh)
    reduction: str | None = None  # paper-v2: fc | crop | pca | avgpool | maxpool
    encoding: str | None = None  # paper-v2 / quantum: amplitude | angle | dense
    ansatz: str | None = None  # quantum: hea | strong | qcnn
    layers: int | None = num(None, 1, 1000)  # quantum: ansatz layers
    readout: str | None = None  # quantum: probs | z
    # Noise-aware training: the circuit runs under this noise model in the loop (and when
    # loaded again), e.g. "depolarizing=0.01,readout=0.02" or "preset:ibm-heron";
    # None = noiseless (see qdistill.quantum.noise).
    noise: str | None = None
    noise_method: str | None = None  # with noise: density (exact, <= 10 qubits; default)
    #                                 | trajectories
    # Monte-Carlo trajectories per sample (with noise_method trajectories; default 32)
    noise_trajectories: int | None = num(None, 1, 100_000)


@dataclass
class KDConfig:
    # none | lenet | alexnet | ensemble | mlp | a teacher run directory | FILE.py:NAME
    # (your own nn.Module class or factory) | FILE.onnx (see qdistill.teachers.user)
    teacher: str = "lenet"
    # With teacher FILE.py:NAME only: its trained weights (.safetensors, or a .pt/.pth
    # state dict read with torch.load(weights_only=True)), loaded strictly and frozen;
    # None = train NAME with the teacher protocol (cached like the built-in teachers)
    teacher_weights: str | None = None
    temperature: float = num(3.0, 0.0, None, lo_open=True)  # paper: T = 3
    alpha: float = num(0.9, 0.0, 1.0)  # paper: 0.9
    # the loss (--loss), a name in qdistill.losses.LOSSES: hinton = (1-a) CE + a T^2 KL,
    # paper = CE + a T^2 KL
    variant: str = "hinton"
    # paper: 10; the committed grid may use fewer (README says)
    teacher_epochs: int = num(10, 1, MAX_EPOCHS)
    teacher_seed: int = num(0, *SEEDS)  # one teacher serves every student seed, as in the paper
    # options of the loss (--loss-opt key=value), e.g. {"beta": 8.0} for dkd
    options: dict[str, float] = field(default_factory=dict)


def _student_data() -> DataConfig:
    # The paper's student protocol: the first 150 images per class for train and test.
    # Validation (our addition, for model selection): 50 more per class from train.
    return DataConfig(train_per_class=150, test_per_class=150, val_per_class=50)


def _student_train() -> TrainConfig:
    return TrainConfig(batch_size=1)  # paper: batch 1, Adam 1e-3, 10 epochs


@dataclass
class DistillConfig:
    student: StudentConfig = field(default_factory=StudentConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    data: DataConfig = field(default_factory=_student_data)
    train: TrainConfig = field(default_factory=_student_train)


_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _check_type(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` where that is lossless, else raise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}",
                          key=key)
    if origin is dict:  # dict[str, float]: every key a string, every value a number
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}", key=key)
        _, vt = typing.get_args(tp)
        return {str(k): _check_type(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
        # YAML 1.1 (PyYAML) reads "1e-5" (no dot) as a string; it is the float 1e-05.
        return float(value)
    if tp is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # e.g. classes: 5 in YAML
    if isinstance(tp, type) and isinstance(value, tp) and not (
        tp is int and isinstance(value, bool)
    ):
        return value
    raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {value!r}", key=key)


def _type_name(tp: Any) -> str:
    """``int | None`` -> "int or null" (the YAML spelling of None)."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) \
        else (tp,)
    return " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a))
                       for a in args)


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict; unknown keys and wrong types raise."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r} must be a "
                          f"mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in section {prefix.rstrip('.')!r}" if prefix else ""
        raise ConfigError(f"unknown config key(s) {unknown}{where}; valid: {sorted(names)}")
    kwargs = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            # A section given in part keeps this class's defaults for the rest (e.g. the
            # student's data section defaults to 150 images per class, not DataConfig's).
            f = fields[name]
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
                else tp()
            merged = _merge(to_dict(default), value) if isinstance(value, dict) else value
            kwargs[name] = from_dict(tp, merged, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(value, tp, prefix + name)
            _check_range(fields[name], kwargs[name], prefix + name)
    return cls(**kwargs)


def _check_range(f: dataclasses.Field, value: Any, key: str) -> None:
    rng = f.metadata.get("range")
    if rng is not None and value is not None and value not in rng:
        raise ConfigError(f"config key {key!r}: must be {rng.text()}, got {value!r}", key=key)


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every numeric field of a config built in Python against its range (loading
    from YAML or the command line checks them already)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            validate(value, f"{prefix}{f.name}.")
        else:
            _check_range(f, value, prefix + f.name)


def ranges(cls: type) -> dict[str, Range]:
    """``{"train.epochs": Range(1, ...), ...}``: every numeric option of a config class."""
    out: dict[str, Range] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update({f"{f.name}.{k}": r for k, r in ranges(hints[f.name]).items()})
        elif "range" in f.metadata:
            out[f.name] = f.metadata["range"]
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a JSON/YAML-able nested dict."""
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a nested dict (values parsed as YAML scalars)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    return data


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
    base: dict[str, Any] | None = None,
) -> T:
    """Defaults <- ``base`` dict <- YAML file <- dotted overrides, checked strictly."""
    data: dict[str, Any] = base or {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            # PyYAML's own message spans several lines (context, caret): keep it to one.
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            what = getattr(exc, "problem", None) or " ".join(str(exc).split())
            raise ConfigError(f"config file {path} is not valid YAML{where}: {what}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = _merge(data, _run_config(cls, loaded, path))
    return from_dict(cls, apply_overrides(data, overrides or []))


# What a run directory's config.json records (run metadata, the resolved config under
# "config"), by its "kind", for the config class it feeds.
_RUN_KINDS = {"DistillConfig": ("student", "qdistill distill"),
              "TeacherConfig": ("teacher", "qdistill teacher train")}


def _run_config(cls: type, loaded: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """A run's ``RUN/config.json`` given as a config file: its ``config`` section, so the
    same command gets the same run (reused when finished in the same output directory).
    Any other mapping is a config file as it is."""
    kind = loaded.get("kind")
    if not (isinstance(loaded.get("config"), dict) and kind in ("student", "teacher")):
        return loaded
    want, command = _RUN_KINDS.get(cls.__name__, (None, None))
    if kind != want:
        other = next((c for k, c in _RUN_KINDS.values() if k == kind), "another command")
        raise ConfigError(f"config file {path} is the config of a {kind} run; use it with "
                          f"{other}" + (f", not {command}" if command else ""))
    return loaded["config"]


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
