"""The ``qdistill`` command line.

    qdistill data info mnist
    qdistill teacher train --arch lenet --dataset mnist --classes 0-5
    qdistill teacher eval --checkpoint ~/.cache/qdistill/teachers/lenet-mnist-0-5-<key>

Every subcommand has ``--help``. A user error prints one line and exits with status 2;
``--debug`` shows the traceback instead.
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


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the option (not a usage block)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"qdistill: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


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


def _data_options(p: argparse.ArgumentParser, prefix: str = "data.") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", dest=f"{prefix}dataset",
                   help="mnist | fashion-mnist | cifar10 | digits (default: mnist), or your "
                        "own: FILE.npz (x_train y_train x_test y_test [class_names]) or an "
                        "image folder DIR (DIR/train/CLASS/*.png|jpg, DIR/test/CLASS/...)")
    g.add_argument("--classes", dest=f"{prefix}classes",
                   help="class subset: 0-5, 0-7, 0,3,7 or 'all' (default: 0-5)")
    _num_option(g, "--train-per-class", f"{prefix}train_per_class", int,
                "keep the first N training images of each class (paper students: 150)")
    _num_option(g, "--test-per-class", f"{prefix}test_per_class", int,
                "keep the first N test images of each class")
    _num_option(g, "--val-fraction", f"{prefix}val_fraction", float,
                "fraction of the training split held out for model selection (default 0.1)")
    _num_option(g, "--val-per-class", f"{prefix}val_per_class", int,
                "with --train-per-class: validation images per class")
    g.add_argument("--data-dir", dest=f"{prefix}data_dir",
                   help="directory of IDX files (or CIFAR-10 python batches); "
                        "default: $QDISTILL_DATA_DIR, then the built-in sources")


def _train_options(p: argparse.ArgumentParser, prefix: str = "train.") -> None:
    g = p.add_argument_group("training")
    _num_option(g, "--epochs", f"{prefix}epochs", int, "default 10 (paper)")
    _num_option(g, "--batch-size", f"{prefix}batch_size", int,
                "default 128 for teachers, 1 for students (paper)")
    _num_option(g, "--lr", f"{prefix}lr", float, "Adam learning rate (1e-3)")
    _num_option(g, "--seed", f"{prefix}seed", int, "default 0")
    g.add_argument("--device", dest=f"{prefix}device", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--deterministic", dest=f"{prefix}deterministic", action="store_const",
                   const=True, help="torch deterministic algorithms (for CUDA runs)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (yaml.safe_load; unknown keys are errors)")
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


def _student_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("student")
    g.add_argument("--student", dest="student.name",
                   help="paper-v1 | paper-v2 | quantum (default paper-v1)")
    _num_option(g, "--qubits", "student.qubits", int,
                "default 3; at least log2(classes), at most what fits in memory")
    _num_option(g, "--shots", "student.shots", int,
                "finite shots (paper: 5000/3000/2000); default exact probabilities")
    # Options of one kind of student: given to another kind, they are an error.
    g.add_argument("--head", dest="student.head",
                   help="paper-v1 only: readout logprob (default) | paper")
    g.add_argument("--angles", dest="student.angles",
                   help="paper-v1 only: angle range pi (the paper's, default) | half-pi")
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
    print(f"config: {json.dumps(to_dict(cfg))}")
    _, result, meta = run_distill(cfg, out, callbacks=_callbacks(args))
    p = meta["parameters"]
    print(f"student {cfg.student.name} ({p['classical']:,} classical + {p['quantum']:,} "
          f"quantum parameters), teacher {cfg.kd.teacher}: test accuracy "
          f"{100 * result.test_acc:.2f}% at epoch {result.best_epoch} (selected on "
          f"validation {100 * result.val_acc:.2f}%); paper's metric (best test over "
          f"epochs) {100 * result.paper_best_test_acc:.2f}%")
    print(f"run directory: {out}")
    return 0


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


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import GridOptions, run_grid, usable_cpus
    opt = GridOptions(quick=args.quick, seeds=args.seeds, epochs=args.epochs,
                      teacher_epochs=_teacher_epochs(args.teacher_epochs), shots=args.shots,
                      teachers=tuple(args.teachers.split(",")) if args.teachers else None,
                      only=args.only,
                      datasets=tuple(args.datasets.split(",")) if args.datasets else None,
                      device=args.device, data_dir=args.data_dir, head=args.head,
                      angles=args.angles)
    out = Path(args.out) if args.out else (
        Path("runs") / "reproduce" / f"{args.grid}-quick" if args.quick
        else Path("results") / args.grid)
    run_grid(args.grid, opt, out, workers=args.workers or usable_cpus(),
             executor=args.executor, address=args.address)
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
    print(f"config: {json.dumps(to_dict(cfg))}")
    if args.out:
        _, result = train_teacher(cfg, args.out, callbacks=_callbacks(args))
        out, metrics = args.out, result.summary()
    else:
        _, meta = get_teacher(cfg, callbacks=_callbacks(args))
        out, metrics = teacher_dir(cfg), meta["metrics"]
    print(f"teacher {cfg.arch} on {cfg.data.dataset} classes {cfg.data.classes}: "
          f"test accuracy {100 * metrics['test_acc']:.2f}% at epoch {metrics['best_epoch']} "
          f"(selected on validation accuracy {100 * metrics['val_acc']:.2f}%)")
    print(f"checkpoint: {out}")
    return 0


def cmd_teacher_eval(args: argparse.Namespace) -> int:
    from .runs import load_teacher, task_of_run
    from .train import evaluate
    model, meta = load_teacher(args.checkpoint)
    task = task_of_run(meta, args.data_dir)  # --data-dir: other data, on purpose
    acc = evaluate(model, task.test.images, task.test.labels)
    print(json.dumps({"checkpoint": str(args.checkpoint), "arch": meta["arch"],
                      "dataset": meta["dataset"], "classes": meta["classes"],
                      "test_images": len(task.test), "test_acc": acc,
                      "same_data_as_training": task.fingerprint() == meta.get(
                          "data_fingerprint")}, indent=2))
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
    check_writable_dir(out, "evaluation output directory")  # before any slow work
    rows = robustness_rows(args.run, parse_shots(args.shots), args.noise or [], args.seeds,
                           args.method, args.trajectories, device=args.device,
                           test_limit=args.test_limit, log=print if args.verbose else None)
    paths = write_robustness(rows, out)
    print(robustness_table(rows))
    print(f"results: {', '.join(str(p) for p in paths.values())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qdistill",
        description="Knowledge distillation from classical CNN teachers to quantum "
                    "neural network students (arXiv:2311.13810).")
    parser.add_argument("--version", action="version", version=f"qdistill {__version__}")
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
    _data_options(ttrain)
    _train_options(ttrain)
    _common(ttrain)
    ttrain.set_defaults(func=cmd_teacher_train)
    teval = tsub.add_parser("eval", help="test accuracy of a trained teacher")
    teval.add_argument("--checkpoint", required=True, help="teacher run directory")
    teval.add_argument("--data-dir", help="directory of IDX files / CIFAR-10 batches")
    teval.set_defaults(func=cmd_teacher_eval)

    distill = sub.add_parser(
        "distill", help="train one quantum student, with or without a teacher",
        description="Train a quantum student on the paper's protocol (first 150 images "
                    "per class, batch 1, Adam 1e-3, 10 epochs) with KD from a teacher "
                    "(trained once and cached) or, with --teacher none, without.")
    distill.add_argument("--out", help="run directory (default runs/distill/<name>)")
    _student_options(distill)
    _data_options(distill)
    _train_options(distill)
    _common(distill)
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
    rep.add_argument("--shots", action="store_true",
                     help="the paper's finite shots (default: exact probabilities)")
    rep.add_argument("--only", help="run only the runs whose id matches this glob, e.g. "
                                    "'*_q8_paper-v2-fc-amplitude_*' or 'mnist_0-5_*'")
    rep.add_argument("--head", default="paper",
                     help="paper-v1 readout: paper (the notebooks' sigmoid head, default) "
                          "or logprob")
    rep.add_argument("--angles", default="pi",
                     help="paper-v1 angle range: pi (theta = pi tanh, the paper's, default) "
                          "or half-pi (pi/2 tanh: not the paper's; stops the KD collapse, "
                          "see README). Use its own --out")
    rep.add_argument("--datasets", help="comma-separated subset, e.g. fashion-mnist")
    rep.add_argument("--workers", type=number(int, Range(1, 1024)),
                     help="parallel student runs (default: one per usable core); each "
                          "run gets cores/N CPU threads (with Ray: asks for cores/N CPUs)) "
                          "[1..1024]")
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
    rep.add_argument("--device", default="cpu", help="cpu | cuda | auto")
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
    ev.add_argument("--shots", default="",
                    help=f"comma-separated, e.g. 100,1000,10000 [each 1..{MAX_SHOTS}]")
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
    ev.add_argument("--device", default="cpu", help="cpu | cuda")
    ev.add_argument("--out", help="output directory (default <run>/robustness)")
    ev.add_argument("--verbose", action="store_true", help="print every evaluation")
    ev.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (one line, status 2)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with _torchrun(args):
            return args.func(args)
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
