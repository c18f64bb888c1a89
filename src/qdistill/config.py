"""Run configuration: plain dataclasses, YAML via ``yaml.safe_load``, dotted overrides.

Defaults sit next to the field they configure. Loading is strict: an unknown key or a
value of the wrong type is a :class:`ConfigError` naming the key, so a typo in a YAML
file never silently falls back to a default.

    cfg = load_config(TeacherConfig, "teacher.yaml", overrides=["train.epochs=3"])
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


@dataclass
class DataConfig:
    dataset: str = "mnist"
    classes: str | None = "0-5"  # "0-5", "0-7", "0,3,7"; None = every class
    train_per_class: int | None = None  # the paper's students: first 150 per class
    test_per_class: int | None = None
    val_fraction: float = 0.1  # validation carved from the training split (model selection)
    val_per_class: int | None = None  # with train_per_class: validation images per class
    data_dir: str | None = None  # a directory of IDX files (or CIFAR-10 batches)


@dataclass
class TrainConfig:
    epochs: int = 10  # paper: 10 for teachers and students
    batch_size: int = 128  # paper: 128 for teachers, 1 for students
    lr: float = 1e-3  # paper: Adam 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    eval_batch_size: int = 1024  # evaluation only; does not change results
    deterministic: bool = False  # torch.use_deterministic_algorithms (matters on CUDA)


@dataclass
class TeacherConfig:
    arch: str = "lenet"  # lenet | alexnet | ensemble | mlp
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class StudentConfig:
    name: str = "paper-v1"  # paper-v1 | paper-v2 | quantum
    qubits: int = 3
    shots: int | None = None  # None = exact probabilities; paper: 5000/3000/2000
    head: str = "logprob"  # paper-v1 readout: logprob (default) | paper (sigmoid/1-sigmoid)
    # paper-v1 angle range: pi (the paper's theta = pi * tanh(.)) | half-pi (pi/2 * tanh(.),
    # where each bit's probability is monotonic in the angle; see V1FrontEnd)
    angles: str = "pi"
    reduction: str = "fc"  # paper-v2: fc | crop | pca | avgpool | maxpool
    encoding: str = "amplitude"  # paper-v2 / quantum: amplitude | angle | dense
    ansatz: str = "hea"  # quantum: hea | strong | qcnn
    layers: int = 4  # quantum: ansatz layers
    readout: str = "probs"  # quantum: probs | z
    # Noise-aware training: the circuit runs under this noise model in the loop (and when
    # loaded again), e.g. "depolarizing=0.01,readout=0.02" or "preset:ibm-heron";
    # None = noiseless (see qdistill.quantum.noise).
    noise: str | None = None
    noise_method: str = "density"  # density (exact, <= 10 qubits) | trajectories
    noise_trajectories: int = 32  # Monte-Carlo trajectories per sample (trajectories only)


@dataclass
class KDConfig:
    teacher: str = "lenet"  # none | lenet | alexnet | ensemble | a teacher run directory
    temperature: float = 3.0  # paper: T = 3
    alpha: float = 0.9  # paper: 0.9
    variant: str = "hinton"  # hinton: (1-a) CE + a T^2 KL ; paper: CE + a T^2 KL
    teacher_epochs: int = 10  # paper: 10; the committed grid may use fewer (README says)
    teacher_seed: int = 0  # one teacher serves every student seed, as in the paper


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
        raise ConfigError(f"config key {key!r}: expected {tp}, got {value!r}")
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
    raise ConfigError(
        f"config key {key!r}: expected {getattr(tp, '__name__', tp)}, got {value!r}"
    )


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
    return cls(**kwargs)


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
        data = _merge(data, loaded)
    return from_dict(cls, apply_overrides(data, overrides or []))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
