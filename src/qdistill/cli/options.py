"""Options the subcommands share: one spelling, type, range and default each (the
numeric ranges come from the config dataclasses), the parser class that prints one-line
errors, and the help texts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from ..config import DistillConfig, Range, TeacherConfig, load_config, ranges
from ..errors import QdistillError

# Valid range of every numeric config option, by config key ("train.epochs"): checked
# when the command line is parsed, and again on any YAML / --set value.
RANGES = {**ranges(TeacherConfig), **ranges(DistillConfig)}


# Options renamed on some subcommand: a usage error for the old spelling names the new.
_RENAMED = {("reproduce", "--shots"): "--paper-shots (reproduce's switch for the paper's "
                                      "shot counts; --shots N takes a number elsewhere)"}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the option (not a usage block)."""

    argv: Sequence[str] = ()  # the command line being parsed (set by main)

    def error(self, message: str) -> None:  # type: ignore[override]
        for (command, old), new in _RENAMED.items():
            if command in self.argv and message.startswith("unrecognized arguments:") \
                    and old in message.split():
                message = f"{message}; on {command}, {old} is now {new}"
        sys.stderr.write(f"qdistill: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


class DeprecatedAlias(argparse.Action):
    """An old spelling that still works (stored under the new option's dest); a warning
    naming the new one goes to stderr after the command succeeds (an error stays one
    line)."""

    def __init__(self, *args: Any, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        notes = getattr(namespace, "deprecated", None) or []
        namespace.deprecated = [*notes, f"{option_string} is deprecated; use {self.new}"]
        setattr(namespace, self.dest, values)


# One spelling, type and default per concept across subcommands (tests/test_cli_options.py
# checks it on the parser): --device is a `device` everywhere, default auto.
DEVICE_HELP = ("auto (default: the GPU when PyTorch sees one, else the CPU) | cpu | cuda | "
               "cuda:N")


def device(text: str) -> str:
    """An argparse ``type``: auto, cpu, cuda or cuda:N."""
    t = text.strip().lower()
    if t in ("auto", "cpu", "cuda") or (t.startswith("cuda:") and t[5:].isdigit()):
        return t
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")


def device_option(g: Any, dest: str | None = None) -> None:
    """--device; with a config ``dest`` its default is the config's (auto), so that a
    --config file's device is not overridden."""
    g.add_argument("--device", type=device, help=DEVICE_HELP,
                   **({"dest": dest, "default": None} if dest else {"default": "auto"}))


def json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print one JSON document with the results instead of text "
                        "(progress and logs go to stderr)")


def number(kind: type, rng: Range) -> Any:
    """An argparse ``type`` that parses ``kind`` (int or float) and checks ``rng``."""
    def parse(text: str) -> Any:
        what = "an integer" if kind is int else "a number"
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} {rng.text()}, "
                                             f"got {text!r}") from None
        if value not in rng:
            raise argparse.ArgumentTypeError(f"must be {rng.text()}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


def num_option(g: Any, flag: str, dest: str, kind: type, help: str) -> None:
    """A numeric option backed by config key ``dest``: its range is the config's."""
    rng = RANGES[dest]
    g.add_argument(flag, dest=dest, type=number(kind, rng), help=f"{help} [{rng.text()}]")


def _all(value: Any) -> Any:
    return "all" if value is None else value


def data_options(p: argparse.ArgumentParser, prefix: str = "data.",
                  defaults: Any = None) -> None:
    """The data options; ``defaults`` (a DataConfig) gives the defaults the help states."""
    d = defaults if defaults is not None else TeacherConfig().data
    g = p.add_argument_group("data")
    g.add_argument("--dataset", dest=f"{prefix}dataset",
                   help=f"mnist | fashion-mnist | cifar10 | digits (default: {d.dataset}; "
                        "digits needs pip install 'qdistill[digits]'), or your "
                        "own: FILE.npz (x_train y_train x_test y_test [class_names]) or an "
                        "image folder DIR (DIR/train/CLASS/*.png|jpg, DIR/test/CLASS/...)")
    g.add_argument("--classes", dest=f"{prefix}classes",
                   help=f"class subset: 0-5, 0-7, 0,3,7 or 'all' (default: {_all(d.classes)})")
    num_option(g, "--train-per-class", f"{prefix}train_per_class", int,
                f"keep the first N training images of each class (default "
                f"{_all(d.train_per_class)}; the paper's students: 150); "
                "also spelled --labels-per-class")
    g.add_argument("--labels-per-class", dest=f"{prefix}train_per_class",
                   type=number(int, RANGES[f"{prefix}train_per_class"]),
                   help="the same as --train-per-class: the labelled images per class "
                        f"[{RANGES[f'{prefix}train_per_class'].text()}]")
    num_option(g, "--test-per-class", f"{prefix}test_per_class", int,
                f"keep the first N test images of each class (default "
                f"{_all(d.test_per_class)})")
    num_option(g, "--val-fraction", f"{prefix}val_fraction", float,
                f"fraction of the training split held out for model selection (default "
                f"{d.val_fraction})")
    num_option(g, "--val-per-class", f"{prefix}val_per_class", int,
                "with --train-per-class: validation images per class (default "
                f"{d.val_per_class if d.val_per_class is not None else 'from --val-fraction'})")
    g.add_argument("--data-dir", dest=f"{prefix}data_dir",
                   help="directory of IDX files (or CIFAR-10 python batches); "
                        "default: $QDISTILL_DATA_DIR, then the built-in sources")


def train_options(p: argparse.ArgumentParser, prefix: str = "train.",
                   defaults: Any = None, protocol: str = "teacher") -> None:
    """The training options; ``defaults`` (a TrainConfig) gives the defaults the help
    states, ``protocol`` whose (the paper's teacher or student protocol)."""
    t = defaults if defaults is not None else TeacherConfig().train
    g = p.add_argument_group("training")
    num_option(g, "--epochs", f"{prefix}epochs", int, f"default {t.epochs} (the paper's)")
    num_option(g, "--batch-size", f"{prefix}batch_size", int,
                f"default {t.batch_size} (the paper's {protocol} protocol)")
    num_option(g, "--lr", f"{prefix}lr", float, f"Adam learning rate (default {t.lr:g})")
    num_option(g, "--seed", f"{prefix}seed", int, f"default {t.seed}")
    device_option(g, f"{prefix}device")
    g.add_argument("--deterministic", dest=f"{prefix}deterministic", action="store_const",
                   const=True, help="torch deterministic algorithms (for CUDA runs)")


def common_options(p: argparse.ArgumentParser, tracking: bool = True) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="YAML config file (yaml.safe_load; unknown keys are errors), or a "
                        "run's RUN/config.json: the same run again (a finished one in the "
                        "same --out is reused, not retrained)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set train.epochs=3 (repeatable)")
    if not tracking:
        return
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write every epoch's metrics as TensorBoard scalars to DIR "
                        "(pip install 'qdistill[tensorboard]')")


def collect_overrides(args: argparse.Namespace) -> list[str]:
    """Options given on the command line, as dotted overrides (after the YAML file)."""
    out = []
    for key, value in vars(args).items():
        if "." in key and value is not None:
            if key.endswith(".classes") and value == "all":
                out.append(f"{key}=")
            elif isinstance(value, float):  # YAML 1.1 reads 1e-05 as a string, 1.0e-05
                out.append(f"{key}={yaml.safe_dump(value).splitlines()[0]}")  # as a float
            else:
                out.append(f"{key}={json.dumps(value)}")
    for item in getattr(args, "loss_opt", None) or []:
        if "=" not in item or not item.split("=", 1)[0].strip().isidentifier():
            raise QdistillError(f"--loss-opt {item!r}: give KEY=VALUE, e.g. beta=8")
        out.append(f"kd.options.{item.strip()}")
    return out + list(args.set)


def teacher_config(args: argparse.Namespace) -> TeacherConfig:
    base: dict[str, Any] = {}
    if args.arch:
        base["arch"] = args.arch
    return load_config(TeacherConfig, args.config, collect_overrides(args), base=base)


SHOTS_HELP = ("measurement shots per circuit evaluation (an integer; the paper: 5000/3000/"
              "2000); default: exact probabilities")
HEAD_HELP = ("paper-v1 only: readout logprob (log(p + 0.01), default) | paper (the "
             "notebooks' sigmoid head)")
ANGLES_HELP = ("paper-v1 only: angle range pi (theta = pi tanh, the paper's, default) | "
               "half-pi (pi/2 tanh: not the paper's; stops the KD collapse, see README)")


def student_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student")
    g.add_argument("--student", dest="student.name",
                   help="paper-v1 | paper-v2 | quantum (default paper-v1)")
    num_option(g, "--qubits", "student.qubits", int,
                "default 3; at least log2(classes), at most what fits in memory")
    num_option(g, "--shots", "student.shots", int, SHOTS_HELP)
    # Options of one kind of student: given to another kind, they are an error.
    g.add_argument("--head", dest="student.head", help=HEAD_HELP)
    g.add_argument("--angles", dest="student.angles", help=ANGLES_HELP)
    g.add_argument("--reduction", dest="student.reduction",
                   help="paper-v2: fc (default) | crop | pca | avgpool | maxpool; quantum: "
                        "crop | pca | avgpool (default) | maxpool")
    g.add_argument("--encoding", dest="student.encoding",
                   help="paper-v2 and quantum: amplitude (default) | angle | dense")
    g.add_argument("--ansatz", dest="student.ansatz",
                   help="quantum only: hea (default) | strong | qcnn")
    num_option(g, "--layers", "student.layers", int, "quantum only: ansatz layers (default 4)")
    g.add_argument("--readout", dest="student.readout",
                   help="quantum only: probs (default) | z")
    k = p.add_argument_group("distillation")
    k.add_argument("--teacher", dest="kd.teacher",
                   help="none (baseline) | lenet (default) | alexnet | ensemble | mlp | a "
                        "teacher run directory | FILE.py:NAME: your own nn.Module subclass "
                        "or factory in FILE.py, called as NAME(num_classes, (C, H, W)) (or "
                        "NAME() if it takes no arguments); this runs FILE.py; trained and "
                        "cached by the file's content, or frozen with --teacher-weights | "
                        "FILE.onnx: a frozen ONNX model (pip install 'qdistill[onnx]')")
    k.add_argument("--teacher-weights", dest="kd.teacher_weights", metavar="FILE",
                   help="with --teacher FILE.py:NAME: its trained weights (.safetensors, "
                        "or a .pt/.pth state dict read with torch.load(weights_only=True)), "
                        "loaded strictly; the teacher is then used frozen, not trained")
    num_option(k, "--temperature", "kd.temperature", float, "T (paper: 3)")
    num_option(k, "--alpha", "kd.alpha", float, "weight of the KL term (paper: 0.9)")
    k.add_argument("--loss", "--kd-variant", dest="kd.variant",
                   help="the distillation loss, a name in qdistill.losses.LOSSES: hinton "
                        "((1-a) CE + a T^2 KL, default) | paper (CE + a T^2 KL) | dkd "
                        "(decoupled KD) | lskd (z-scored logits) | learned-scale (a trained "
                        "student logit scale) | hint (+ FitNets: circuit input -> teacher "
                        "features) | pseudo (CE on the teacher's argmax)")
    k.add_argument("--transfer", dest="data.transfer", metavar="unlabelled[:N]|augmented:K",
                   help="a transfer set the teacher labels softly and the student sees "
                        "without labels: unlabelled[:N] = N more training images per class "
                        "(all that are left without :N; the labelled ones are "
                        "--labels-per-class), augmented:K = K shifted/rotated views of "
                        "every labelled image")
    k.add_argument("--loss-opt", dest="loss_opt", action="append", metavar="KEY=VALUE",
                   help="an option of the loss, repeatable, e.g. --loss dkd --loss-opt "
                        "beta=8 (kd.options in YAML)")
    num_option(k, "--teacher-epochs", "kd.teacher_epochs", int,
                "epochs of a teacher trained on demand (paper: 10)")


def data_error() -> type[Exception]:
    from ..data import DataError
    return DataError


def pool_options(p: argparse.ArgumentParser) -> None:
    """How many runs train at once, where, and whether in lockstep (reproduce, sweep)."""
    p.add_argument("--workers", type=number(int, Range(1, 1024)),
                   help="parallel student runs (default: one per usable core); each "
                        "run gets cores/N CPU threads (with Ray: asks for cores/N CPUs)) "
                        "[1..1024]")
    p.add_argument("--lockstep", choices=["on", "off"], default="on",
                   help="on: runs that differ only in seed, teacher, T, alpha or lr train "
                        "together, one batched step for all (the paper-v1 grid ~8x "
                        "faster; a CNN front end runs in a C kernel built on first use, "
                        "QDISTILL_NATIVE=0 for PyTorch's; the same files "
                        "and random draws, but float rounding differs, so numbers are "
                        "another draw and a resumed group is not bit-identical: see "
                        "docs/performance.md); off: one run at a time, bit for bit "
                        "reproducible and resumable (default: on)")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local: a pool of --workers processes (default); ray: one Ray "
                        "task per run, retried if its worker dies and resumed from its "
                        "last epoch (pip install 'qdistill[ray]')")
    p.add_argument("--address",
                   help="with --executor ray: an existing cluster, as HEAD_IP:6379 or "
                        "auto (run on a node of it); ray://HEAD:10001 (Ray Client) needs "
                        "'ray[client]' and is untested. --out must then be on a "
                        "filesystem all nodes share. Default: a local Ray instance on "
                        "this machine's cores")
