"""The ``qdistill`` command line.

    qdistill data info mnist
    qdistill teacher train --arch lenet --dataset mnist --classes 0-5
    qdistill teacher eval --run ~/.cache/qdistill/teachers/lenet-mnist-0-5-<key>

Every subcommand has ``--help``. A user error prints one line and exits with status 2;
``--debug`` shows the traceback instead. An option means the same everywhere (one
spelling, type and default: tests/test_cli_options.py); ``qdistill cache`` and
``qdistill completion`` live in cache_cmd.py and completion.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from . import __version__
from .config import MAX_SHOTS, DistillConfig, Range, TeacherConfig, load_config, ranges, to_dict
from .errors import ConfigError, QdistillError

# Valid range of every numeric config option, by config key ("train.epochs"): checked
# when the command line is parsed, and again on any YAML / --set value.
_RANGES = {**ranges(TeacherConfig), **ranges(DistillConfig)}


# Options renamed on some subcommand: a usage error for the old spelling names the new.
_RENAMED = {("reproduce", "--shots"): "--paper-shots (reproduce's switch for the paper's "
                                      "shot counts; --shots N takes a number elsewhere)"}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the option (not a usage block)."""

    argv: Sequence[str] = ()  # the command line being parsed (set by main)

    def error(self, message: str) -> None:  # type: ignore[override]
        for (command, old), new in _RENAMED.items():
            if command in self.argv and message.startswith("unrecognized arguments:") \
                    and old in message.split():
                message = f"{message}; on {command}, {old} is now {new}"
        sys.stderr.write(f"qdistill: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


class _DeprecatedAlias(argparse.Action):
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


def _device_option(g: Any, dest: str | None = None) -> None:
    """--device; with a config ``dest`` its default is the config's (auto), so that a
    --config file's device is not overridden."""
    g.add_argument("--device", type=device, help=DEVICE_HELP,
                   **({"dest": dest, "default": None} if dest else {"default": "auto"}))


def _json_option(p: argparse.ArgumentParser) -> None:
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


def _num_option(g: Any, flag: str, dest: str, kind: type, help: str) -> None:
    """A numeric option backed by config key ``dest``: its range is the config's."""
    rng = _RANGES[dest]
    g.add_argument(flag, dest=dest, type=number(kind, rng), help=f"{help} [{rng.text()}]")


def _all(value: Any) -> Any:
    return "all" if value is None else value


def _data_options(p: argparse.ArgumentParser, prefix: str = "data.",
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
    _num_option(g, "--train-per-class", f"{prefix}train_per_class", int,
                f"keep the first N training images of each class (default "
                f"{_all(d.train_per_class)}; the paper's students: 150); "
                "also spelled --labels-per-class")
    g.add_argument("--labels-per-class", dest=f"{prefix}train_per_class",
                   type=number(int, _RANGES[f"{prefix}train_per_class"]),
                   help="the same as --train-per-class: the labelled images per class "
                        f"[{_RANGES[f'{prefix}train_per_class'].text()}]")
    _num_option(g, "--test-per-class", f"{prefix}test_per_class", int,
                f"keep the first N test images of each class (default "
                f"{_all(d.test_per_class)})")
    _num_option(g, "--val-fraction", f"{prefix}val_fraction", float,
                f"fraction of the training split held out for model selection (default "
                f"{d.val_fraction})")
    _num_option(g, "--val-per-class", f"{prefix}val_per_class", int,
                "with --train-per-class: validation images per class (default "
                f"{d.val_per_class if d.val_per_class is not None else 'from --val-fraction'})")
    g.add_argument("--data-dir", dest=f"{prefix}data_dir",
                   help="directory of IDX files (or CIFAR-10 python batches); "
                        "default: $QDISTILL_DATA_DIR, then the built-in sources")


def _train_options(p: argparse.ArgumentParser, prefix: str = "train.",
                   defaults: Any = None, protocol: str = "teacher") -> None:
    """The training options; ``defaults`` (a TrainConfig) gives the defaults the help
    states, ``protocol`` whose (the paper's teacher or student protocol)."""
    t = defaults if defaults is not None else TeacherConfig().train
    g = p.add_argument_group("training")
    _num_option(g, "--epochs", f"{prefix}epochs", int, f"default {t.epochs} (the paper's)")
    _num_option(g, "--batch-size", f"{prefix}batch_size", int,
                f"default {t.batch_size} (the paper's {protocol} protocol)")
    _num_option(g, "--lr", f"{prefix}lr", float, f"Adam learning rate (default {t.lr:g})")
    _num_option(g, "--seed", f"{prefix}seed", int, f"default {t.seed}")
    _device_option(g, f"{prefix}device")
    g.add_argument("--deterministic", dest=f"{prefix}deterministic", action="store_const",
                   const=True, help="torch deterministic algorithms (for CUDA runs)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="YAML config file (yaml.safe_load; unknown keys are errors), or a "
                        "run's RUN/config.json: the same run again (a finished one in the "
                        "same --out is reused, not retrained)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--tensorboard", metavar="DIR",
                   help="also write every epoch's metrics as TensorBoard scalars to DIR "
                        "(pip install 'qdistill[tensorboard]')")


def _collect_overrides(args: argparse.Namespace) -> list[str]:
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


def _teacher_config(args: argparse.Namespace) -> TeacherConfig:
    base: dict[str, Any] = {}
    if args.arch:
        base["arch"] = args.arch
    return load_config(TeacherConfig, args.config, _collect_overrides(args), base=base)


SHOTS_HELP = ("measurement shots per circuit evaluation (an integer; the paper: 5000/3000/"
              "2000); default: exact probabilities")
HEAD_HELP = ("paper-v1 only: readout logprob (log(p + 0.01), default) | paper (the "
             "notebooks' sigmoid head)")
ANGLES_HELP = ("paper-v1 only: angle range pi (theta = pi tanh, the paper's, default) | "
               "half-pi (pi/2 tanh: not the paper's; stops the KD collapse, see README)")


def _student_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student")
    g.add_argument("--student", dest="student.name",
                   help="paper-v1 | paper-v2 | quantum (default paper-v1)")
    _num_option(g, "--qubits", "student.qubits", int,
                "default 3; at least log2(classes), at most what fits in memory")
    _num_option(g, "--shots", "student.shots", int, SHOTS_HELP)
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
    _num_option(g, "--layers", "student.layers", int, "quantum only: ansatz layers (default 4)")
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
    _num_option(k, "--temperature", "kd.temperature", float, "T (paper: 3)")
    _num_option(k, "--alpha", "kd.alpha", float, "weight of the KL term (paper: 0.9)")
    k.add_argument("--loss", "--kd-variant", dest="kd.variant",
                   help="the distillation loss, a name in qdistill.losses.LOSSES: hinton "
                        "((1-a) CE + a T^2 KL, default) | paper (CE + a T^2 KL) | dkd "
                        "(decoupled KD) | lskd (z-scored logits) | learned-scale (a trained "
                        "student logit scale) | pseudo (CE on the teacher's argmax)")
    k.add_argument("--transfer", dest="data.transfer", metavar="unlabelled[:N]|augmented:K",
                   help="a transfer set the teacher labels softly and the student sees "
                        "without labels: unlabelled[:N] = N more training images per class "
                        "(all that are left without :N; the labelled ones are "
                        "--labels-per-class), augmented:K = K shifted/rotated views of "
                        "every labelled image")
    k.add_argument("--loss-opt", dest="loss_opt", action="append", metavar="KEY=VALUE",
                   help="an option of the loss, repeatable, e.g. --loss dkd --loss-opt "
                        "beta=8 (kd.options in YAML)")
    _num_option(k, "--teacher-epochs", "kd.teacher_epochs", int,
                "epochs of a teacher trained on demand (paper: 10)")


def _callbacks(args: argparse.Namespace) -> list[Any]:
    """Epoch callbacks the options ask for (--tensorboard DIR)."""
    if not args.tensorboard:
        return []
    from .checkpoint import check_writable_dir
    from .tracking import TensorBoard
    check_writable_dir(args.tensorboard, "TensorBoard directory")
    return [TensorBoard(args.tensorboard)]


def cmd_distill(args: argparse.Namespace) -> int:
    from .config import DistillConfig
    from .data import dataset_label
    from .student_runs import run_distill
    cfg = load_config(DistillConfig, args.config, _collect_overrides(args))
    out = Path(args.out) if args.out else Path("runs") / "distill" / (
        f"{cfg.student.name}-q{cfg.student.qubits}-{dataset_label(cfg.data.dataset)}-"
        f"{(cfg.data.classes or 'all').replace(',', '_')}-{Path(cfg.kd.teacher).name}"
        f"-s{cfg.train.seed}")
    log = _log(args)
    if not args.json:
        print(f"config: {json.dumps(to_dict(cfg))}")
    trained = _EpochCounter()
    try:
        _, result, meta = run_distill(cfg, out, log=log,
                                      callbacks=[*_callbacks(args), trained])
    except (QdistillError, _data_error()) as exc:
        problems = _misfits(cfg)  # a small dataset can miss several defaults at once
        if problems:
            raise QdistillError(_problems_text(cfg, problems, exc)) from exc
        raise
    p = meta["parameters"]
    reused = trained.epochs == 0
    if args.json:
        _print_json({"run": str(out), "reused": reused, "epochs_trained": trained.epochs,
                     **result.summary(), "student": cfg.student.name,
                     "teacher": cfg.kd.teacher, "parameters": p, "config": to_dict(cfg)})
        return 0
    if reused:
        print(f"reused, not retrained: {out} holds this finished run ({len(result.history)} "
              "epochs; delete it or use another --out to train again)")
    print(f"student {cfg.student.name} ({p['classical']:,} classical + {p['quantum']:,} "
          f"quantum parameters), teacher {cfg.kd.teacher}: test accuracy "
          f"{100 * result.test_acc:.2f}% at epoch {result.best_epoch} (selected on "
          f"validation {100 * result.val_acc:.2f}%); paper's metric (best test over "
          f"epochs) {100 * result.paper_best_test_acc:.2f}%")
    print(f"run directory: {out}")
    return 0


class _EpochCounter:
    """An epoch callback counting the epochs trained by this call (a resumed or finished
    run's restored epochs are not replayed to callbacks)."""

    def __init__(self) -> None:
        self.epochs = 0

    def __call__(self, metrics: dict[str, Any]) -> None:
        self.epochs += 1


def _log(args: argparse.Namespace) -> Any:
    """Where progress lines go: stdout, or stderr with --json (stdout holds the JSON)."""
    if getattr(args, "json", False):
        return lambda message: print(message, file=sys.stderr)
    return print


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, default=str))


def _misfits(cfg: DistillConfig) -> list[str]:
    """Every option of ``cfg`` that does not fit its data, each with the flag that fixes
    it (a run stops at the first; a small dataset such as the 8x8 digits misses several
    of distill's defaults, which are the paper's protocol for MNIST). Empty when the data
    cannot be read or nothing is found (the run's own error then stands)."""
    from .data import parse_classes
    from .data.raw import load_arrays
    from .data.tasks import default_val_per_class
    from .students import build_student, resolve_student
    from .teachers import TEACHERS, build_teacher

    try:
        loaded = load_arrays(cfg.data.dataset, cfg.data.data_dir)
        chosen = parse_classes(cfg.data.classes, len(loaded.class_names))
    except Exception:  # the run's own error says what is wrong with the data
        return []
    a, d, problems = loaded.arrays, cfg.data, []
    n_train = min(int((a["train_labels"] == c).sum()) for c in chosen)
    n_test = min(int((a["test_labels"] == c).sum()) for c in chosen)
    if d.train_per_class is not None and n_train > 1:
        val = d.val_per_class if d.val_per_class is not None else default_val_per_class(
            d.train_per_class, d.val_fraction)
        if d.train_per_class + val > n_train:
            t = max(1, n_train * 3 // 4 // 10 * 10 or n_train * 3 // 4)
            v = min(val, n_train - t) if d.train_per_class <= n_train else n_train - t
            problems.append(f"use --train-per-class {t} --val-per-class {v} or less (asked "
                            f"{d.train_per_class} + {val} per class; the smallest class "
                            f"has {n_train} training images)")
    if d.test_per_class is not None and 0 < n_test < d.test_per_class:
        problems.append(f"use --test-per-class {n_test} or less (asked {d.test_per_class}; "
                        f"the smallest class has {n_test} test images)")
    shape = tuple(int(x) for x in a["train_images"].shape[1:])
    if len(shape) == 3:
        try:
            build_student(resolve_student(cfg.student), len(chosen), shape)
        except QdistillError as exc:
            hint = ("; --student paper-v2 or quantum take any image size"
                    if cfg.student.name == "paper-v1" and min(shape[1:]) < 16 else "")
            problems.append(f"{exc}{hint}")
        except Exception:  # noqa: S110 - not a misfit of the options
            pass
        if cfg.kd.teacher in TEACHERS:
            try:
                build_teacher(cfg.kd.teacher, len(chosen), shape)
            except QdistillError as exc:
                problems.append(str(exc))
    return problems


def _problems_text(cfg: DistillConfig, problems: list[str], exc: Exception) -> str:
    """One line: the run's error with its fix, or every misfit found, numbered."""
    if len(problems) == 1:
        return problems[0] if str(exc) in problems[0] else f"{exc}; {problems[0]}"
    items = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
    return (f"{cfg.data.dataset}: {len(problems)} settings do not fit this data (distill's "
            f"defaults are the paper's protocol for 28x28 MNIST): {items}")


def _teacher_epochs(spec: str | None) -> dict[str, int] | None:
    """"3" -> every teacher 3 epochs; "lenet=10,alexnet=1" -> per teacher (others 10)."""
    if not spec:
        return None
    from .teachers import TEACHERS
    rng = _RANGES["kd.teacher_epochs"]
    try:
        if "=" not in spec:
            n = int(spec)
            epochs = {t: n for t in ("lenet", "alexnet", "ensemble")}
        else:
            epochs = {k.strip(): int(v) for k, v in (p.split("=") for p in spec.split(","))}
    except ValueError:
        raise QdistillError(f"--teacher-epochs {spec!r}: give N or arch=N,arch=N") from None
    for arch, n in epochs.items():
        if arch not in TEACHERS:
            raise QdistillError(f"--teacher-epochs {spec!r}: unknown teacher {arch!r}; "
                                f"valid: {', '.join(sorted(TEACHERS))}")
        if n not in rng:
            raise QdistillError(f"--teacher-epochs {spec!r}: epochs must be {rng.text()}")
    return epochs


def grid_options(args: argparse.Namespace) -> Any:
    """The GridOptions of a ``reproduce`` command line."""
    from .reproduce import GridOptions
    # A grid records the device its runs use, and reuses a finished run only when its
    # settings match: "auto" is resolved here, so a grid run with the default on a CPU
    # machine is the same as one run with --device cpu (the committed results/).
    dev = args.device
    if dev == "auto":
        import torch
        dev = "cuda" if torch.cuda.is_available() else "cpu"
    # --head / --angles not given: GridOptions' defaults (the same as distill's)
    student = {k: v for k, v in (("head", args.head), ("angles", args.angles))
               if v is not None}
    opt = GridOptions(quick=args.quick, seeds=args.seeds, epochs=args.epochs,
                      teacher_epochs=_teacher_epochs(args.teacher_epochs),
                      shots=args.paper_shots,
                      teachers=tuple(args.teachers.split(",")) if args.teachers else None,
                      only=args.only,
                      datasets=tuple(args.datasets.split(",")) if args.datasets else None,
                      device=dev, data_dir=args.data_dir, **student)
    return opt


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import run_grid, usable_cpus
    opt = grid_options(args)
    opt.lockstep = args.lockstep == "on"
    dev = opt.device
    out = Path(args.out) if args.out else (
        Path("runs") / "reproduce" / f"{args.grid}-quick" if args.quick
        else Path("results") / args.grid)
    # One GPU: one run at a time, unless --workers says otherwise.
    workers = args.workers or (1 if dev.startswith("cuda") and args.executor == "local"
                               else usable_cpus())
    run_grid(args.grid, opt, out, workers=workers, executor=args.executor,
             address=args.address)
    print((out / "table.md").read_text())
    print(f"results: {out}/ (runs.csv, table.md, accuracy.png, curves.png, gains.png)")
    if args.robustness:  # every finished student, under shots and noise (no retraining)
        from .robustness import grid_robustness
        paths = grid_robustness(out, log=None)
        print(paths["md"].read_text())
        print(f"robustness: {paths['md'].parent}/ (robustness.csv, .md, .png)")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from .data import DataError, dataset_info
    info = dataset_info(args.name, args.data_dir)
    if not info["available"]:  # status 2 and one line naming the sources tried
        raise DataError(info["error"])
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_teacher_train(args: argparse.Namespace) -> int:
    from .runs import get_teacher, teacher_dir, train_teacher
    cfg = _teacher_config(args)
    log = _log(args)
    if not args.json:
        print(f"config: {json.dumps(to_dict(cfg))}")
    trained = _EpochCounter()
    callbacks = [*_callbacks(args), trained]
    if args.out:
        _, result = train_teacher(cfg, args.out, log=log, callbacks=callbacks)
        out, metrics = args.out, result.summary()
    else:
        _, meta = get_teacher(cfg, log=log, callbacks=callbacks)
        out, metrics = teacher_dir(cfg), meta["metrics"]
    if args.json:
        _print_json({"run": str(out), "reused": trained.epochs == 0,
                     "epochs_trained": trained.epochs, "arch": cfg.arch, **metrics,
                     "config": to_dict(cfg)})
        return 0
    if trained.epochs == 0 and args.out:
        print(f"reused, not retrained: {out} holds this finished run")
    print(f"teacher {cfg.arch} on {cfg.data.dataset} classes {cfg.data.classes}: "
          f"test accuracy {100 * metrics['test_acc']:.2f}% at epoch {metrics['best_epoch']} "
          f"(selected on validation accuracy {100 * metrics['val_acc']:.2f}%)")
    print(f"checkpoint: {out}")
    return 0


def cmd_teacher_eval(args: argparse.Namespace) -> int:
    from .runs import load_teacher, task_of_run
    from .train import evaluate
    model, meta = load_teacher(args.run)
    task = task_of_run(meta, args.data_dir)  # --data-dir: other data, on purpose
    acc = evaluate(model, task.test.images, task.test.labels)
    # Always one JSON document (--json is accepted for the same spelling everywhere);
    # "checkpoint" repeats "run" for scripts written against --checkpoint.
    _print_json({"run": str(args.run), "checkpoint": str(args.run), "arch": meta["arch"],
                 "dataset": meta["dataset"], "classes": meta["classes"],
                 "test_images": len(task.test), "test_acc": acc,
                 "same_data_as_training": task.fingerprint() == meta.get("data_fingerprint")})
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_student
    image = args.test_index if args.test_index is not None else args.image
    paths = export_student(args.run, image, args.out, shots=args.shots)
    for path in paths.values():
        print(path)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import check_writable_dir
    from .robustness import parse_shots, robustness_rows, robustness_table, write_robustness
    out = Path(args.out) if args.out else (
        Path(args.run[0]) / "robustness" if len(args.run) == 1 else Path("runs") / "robustness")
    from .train import resolve_device
    check_writable_dir(out, "evaluation output directory")  # before any slow work
    rows = robustness_rows(args.run, parse_shots(args.shots), args.noise or [], args.seeds,
                           args.method, args.trajectories,
                           device=str(resolve_device(args.device)),
                           test_limit=args.test_limit,
                           log=_log(args) if args.verbose else None)
    paths = write_robustness(rows, out)
    if args.json:
        _print_json({"rows": rows, "files": {k: str(v) for k, v in paths.items()}})
        return 0
    print(robustness_table(rows))
    print(f"results: {', '.join(str(p) for p in paths.values())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qdistill",
        description="Knowledge distillation from classical CNN teachers to quantum "
                    "neural network students (arXiv:2311.13810).",
        epilog="The same option means the same thing in every subcommand: --device "
               "auto|cpu|cuda|cuda:N (default auto), --shots N a number of measurement "
               "shots (evaluate: a comma list of them), --head logprob|paper (default "
               "logprob), --run a run directory, --json one JSON document on stdout.")
    parser.add_argument("-V", "--version", action="version", version=f"qdistill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="inspect datasets").add_subparsers(
        dest="data_command", metavar="SUBCOMMAND", required=True)
    info = data.add_parser("info", help="shapes, class counts, source and checksum status")
    info.add_argument("name", help="mnist | fashion-mnist | cifar10 | digits, a FILE.npz or "
                                   "an image-folder DIR (DIR/train/CLASS/*.png, DIR/test/...)")
    info.add_argument("--data-dir", help="directory of IDX files / CIFAR-10 batches")
    info.set_defaults(func=cmd_data_info)

    teacher = sub.add_parser("teacher", help="train or evaluate a classical teacher")
    tsub = teacher.add_subparsers(dest="teacher_command", metavar="SUBCOMMAND", required=True)
    ttrain = tsub.add_parser(
        "train", help="train a teacher (cached by config: a second call loads it)",
        description="Train LeNet-5, AlexNet, the Ensemble or an MLP on a dataset's class "
                    "subset. Without --out the teacher goes to the cache and is reused.")
    ttrain.add_argument("--arch", help="lenet | alexnet | ensemble | mlp (default lenet)")
    ttrain.add_argument("--out", help="run directory (default: the teacher cache)")
    _data_options(ttrain, defaults=TeacherConfig().data)
    _train_options(ttrain, defaults=TeacherConfig().train, protocol="teacher")
    _common(ttrain)
    _json_option(ttrain)
    ttrain.set_defaults(func=cmd_teacher_train)
    teval = tsub.add_parser("eval", help="test accuracy of a trained teacher (JSON)")
    which_run = teval.add_mutually_exclusive_group(required=True)
    which_run.add_argument("--run", help="teacher run directory (teacher train --out, or "
                                         "one in the teacher cache)")
    which_run.add_argument("--checkpoint", dest="run", action=_DeprecatedAlias, new="--run",
                           help="deprecated spelling of --run")
    teval.add_argument("--data-dir", help="directory of IDX files / CIFAR-10 batches")
    _json_option(teval)
    teval.set_defaults(func=cmd_teacher_eval)

    distill = sub.add_parser(
        "distill", help="train one quantum student, with or without a teacher",
        description="Train a quantum student on the paper's protocol (first 150 images "
                    "per class, batch 1, Adam 1e-3, 10 epochs) with KD from a teacher "
                    "(trained once and cached) or, with --teacher none, without.")
    distill.add_argument("--out", help="run directory (default runs/distill/<name>); a "
                                       "finished run there with the same config is reused")
    _student_options(distill)
    _data_options(distill, defaults=DistillConfig().data)
    _train_options(distill, defaults=DistillConfig().train, protocol="student")
    _common(distill)
    _json_option(distill)
    distill.set_defaults(func=cmd_distill)

    rep = sub.add_parser(
        "reproduce", help="run a paper grid with seeds and write tables and plots",
        description="Reproduce arXiv:2311.13810's grid: students with and without each "
                    "teacher, several seeds, selection on validation, the paper's "
                    "numbers beside ours. Finished runs are not redone.")
    rep.add_argument("grid", choices=["paper-v1", "paper-v2"], help="which grid")
    rep.add_argument("--quick", action="store_true",
                     help="reduced grid (one dataset and setting, 2 seeds): < 5 min on 2 cores")
    rep.add_argument("--seeds", type=number(int, Range(1, 100)),
                     help="seeds per cell (default 3; quick 2) [1..100]")
    rep.add_argument("--epochs", type=number(int, _RANGES["train.epochs"]),
                     help=f"student epochs (default 10, the paper's) "
                          f"[{_RANGES['train.epochs'].text()}]")
    rep.add_argument("--teacher-epochs",
                     help="teacher epochs: N, or per teacher as lenet=10,alexnet=1 "
                          "(default 10, the paper's)")
    rep.add_argument("--teachers",
                     help="subset of none,lenet,alexnet,ensemble (default: all; quick: "
                          "none,lenet)")
    rep.add_argument("--paper-shots", action="store_true",
                     help="the paper's finite shots: 5000/3000/2000 for 0-5/3q, 0-7/3q, "
                          "0-7/4q (default: exact probabilities; was --shots)")
    rep.add_argument("--only", help="run only the runs whose id matches this glob, e.g. "
                                    "'*_q8_paper-v2-fc-amplitude_*' or 'mnist_0-5_*'")
    rep.add_argument("--head", help=HEAD_HELP + "; the committed results/paper-v1 used "
                                                "--head paper")
    rep.add_argument("--angles", help=ANGLES_HELP + ". Use its own --out")
    rep.add_argument("--datasets", help="comma-separated subset, e.g. fashion-mnist")
    rep.add_argument("--workers", type=number(int, Range(1, 1024)),
                     help="parallel student runs (default: one per usable core); each "
                          "run gets cores/N CPU threads (with Ray: asks for cores/N CPUs)) "
                          "[1..1024]")
    rep.add_argument("--lockstep", choices=["on", "off"], default="off",
                     help="on: runs that differ only in seed, teacher, T, alpha or lr train "
                          "together, one batched step for all (~4x faster; the same files "
                          "and random draws, but float rounding differs, so numbers are "
                          "another draw and a resumed group is not bit-identical: see "
                          "docs/performance.md); off (default): one run at a time, bit for "
                          "bit reproducible and resumable")
    rep.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: a pool of --workers processes (default); ray: one Ray "
                          "task per run, retried if its worker dies and resumed from its "
                          "last epoch (pip install 'qdistill[ray]')")
    rep.add_argument("--address",
                     help="with --executor ray: an existing cluster, as HEAD_IP:6379 or "
                          "auto (run on a node of it); ray://HEAD:10001 (Ray Client) needs "
                          "'ray[client]' and is untested. --out must then be on a "
                          "filesystem all nodes share. Default: a local Ray instance on "
                          "this machine's cores")
    _device_option(rep)
    rep.add_argument("--data-dir", help="directory of IDX files")
    rep.add_argument("--out", help="default results/<grid> (quick: runs/reproduce/...)")
    rep.add_argument("--robustness", action="store_true",
                     help="then evaluate every student exact, with 100/1000/10000 shots and "
                          "under depolarizing 0.001, 0.01 and preset:ibm-heron noise (3 "
                          "seeds) into OUT/robustness/")
    rep.set_defaults(func=cmd_reproduce)

    exp = sub.add_parser(
        "export", help="write a trained student's circuit for one image as OpenQASM 3",
        description="Write the quantum part of a trained student, for one input image, as "
                    "an OpenQASM 3 program (standard gates only) plus a JSON file with the "
                    "classical pre-processing, bit order, read-out and the student's own "
                    "probabilities.")
    exp.add_argument("--run", required=True, help="student run directory (qdistill distill)")
    which = exp.add_mutually_exclusive_group(required=True)
    which.add_argument("--test-index", type=number(int, Range(0)),
                       help="image I of the student's test split [>= 0]")
    which.add_argument("--image", help=".npy image (uint8 0..255 or float 0..1) of the "
                                       "task's image shape")
    exp.add_argument("--shots", type=number(int, Range(1, MAX_SHOTS)),
                     help=f"record '// shots: N' in the program [1..{MAX_SHOTS}]")
    exp.add_argument("--out", help="output directory (default <run>/export)")
    exp.set_defaults(func=cmd_export)

    ev = sub.add_parser(
        "evaluate", help="test accuracy of trained students under shots and noise",
        description="Evaluate trained students (no retraining) on their test split: exact, "
                    "with finite shots (several seeds), under noise models (density "
                    "matrices or trajectories) and under noise with shots. Writes "
                    "robustness.csv, robustness.md (mean ± std over seeds) and "
                    "robustness.png.")
    ev.add_argument("--run", action="append", required=True,
                    help="student run directory (qdistill distill); repeatable")
    ev.add_argument("--shots",
                    help=f"measurement shots as in distill, but a comma list of them (one "
                         f"setting each), e.g. 100,1000,10000 [each 1..{MAX_SHOTS}]; "
                         "default: exact probabilities only")
    ev.add_argument("--noise", action="append",
                    help="noise model, repeatable: depolarizing=P,depolarizing2=P,"
                         "damping=G,readout=R (any subset) or preset:NAME (ibm-eagle, "
                         "ibm-heron, ionq-aria, quantinuum-h2)")
    ev.add_argument("--seeds", type=number(int, Range(1, 1000)), default=3,
                    help="seeds of shots/trajectories (3) [1..1000]")
    ev.add_argument("--method", default="density", choices=["density", "trajectories"],
                    help="noise simulation: density (exact, <= 10 qubits; default) or "
                         "trajectories (Monte Carlo, any size)")
    ev.add_argument("--trajectories", type=number(int, Range(1, 100_000)), default=100,
                    help="trajectories per image with --method trajectories (100) "
                         "[1..100000]")
    ev.add_argument("--test-limit", type=number(int, Range(1)),
                    help="a fixed random subset of N test images (default: all); noise "
                         "on 8+ qubits costs ~0.2-0.5 s per image on one CPU core) [>= 1]")
    _device_option(ev)
    ev.add_argument("--out", help="output directory (default <run>/robustness)")
    ev.add_argument("--verbose", action="store_true", help="print every evaluation")
    _json_option(ev)
    ev.set_defaults(func=cmd_evaluate)

    from .cache_cmd import add_cache_parser
    from .completion import add_completion_parser
    add_cache_parser(sub, _json_option)
    add_completion_parser(sub, parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _Parser.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (one line, status 2)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with _torchrun(args):
            status = args.func(args)
        for note in getattr(args, "deprecated", None) or []:
            print(f"qdistill: warning: {note}", file=sys.stderr)
        return status
    except (QdistillError, _data_error()) as exc:
        if args.debug:
            raise
        print(f"qdistill: error: {_name_the_option(parser, exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:  # e.g. the simulator refusing an input; --debug to see where
        if args.debug:
            raise
        print(f"qdistill: error: {exc} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qdistill: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _torchrun(args: argparse.Namespace) -> Iterator[None]:
    """Under torchrun (WORLD_SIZE > 1): join the process group for the command, and let
    only rank 0 print (the others' stdout goes to /dev/null; errors still show)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        yield
        return
    if args.func not in (cmd_teacher_train, cmd_distill):
        raise QdistillError("torchrun runs one training (teacher train or distill); for "
                            "grids use reproduce --workers N or --executor ray")
    from . import distributed
    distributed.init_from_env(getattr(args, "train.device", None) or "auto")
    try:
        with contextlib.ExitStack() as stack:
            if not distributed.is_main():
                devnull = stack.enter_context(open(os.devnull, "w"))
                stack.enter_context(contextlib.redirect_stdout(devnull))
            yield
    finally:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


def _name_the_option(parser: argparse.ArgumentParser, exc: Exception) -> str:
    """A config error on key ``train.epochs`` reads "--epochs (train.epochs): ..." when
    the command line has an option for that key."""
    message = str(exc)
    key = getattr(exc, "key", None) if isinstance(exc, ConfigError) else None
    lead = f"config key {key!r}: "
    if key is None or not message.startswith(lead):
        return message
    flags = {a.dest: a.option_strings[0] for p in _all_parsers(parser) for a in p._actions
             if a.option_strings}
    return f"{flags[key]} ({key}): {message[len(lead):]}" if key in flags else message


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def _data_error() -> type[Exception]:
    from .data import DataError
    return DataError


if __name__ == "__main__":
    sys.exit(main())
