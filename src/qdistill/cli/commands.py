"""One function per subcommand: ``cmd_<name>(args) -> exit status``, called by
``main`` (parser.py) with the parsed arguments.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..config import DistillConfig, load_config, to_dict
from ..errors import QdistillError
from .options import RANGES, collect_overrides, data_error, teacher_config


def _callbacks(args: argparse.Namespace) -> list[Any]:
    """Epoch callbacks the options ask for (--tensorboard DIR)."""
    if not args.tensorboard:
        return []
    from ..training.checkpoint import check_writable_dir
    from ..training.tracking import TensorBoard
    check_writable_dir(args.tensorboard, "TensorBoard directory")
    return [TensorBoard(args.tensorboard)]


def cmd_distill(args: argparse.Namespace) -> int:
    from ..config import DistillConfig
    from ..data import dataset_label
    from ..distillation.run import run_distill
    cfg = load_config(DistillConfig, args.config, collect_overrides(args))
    out = Path(args.out) if args.out else Path("runs") / "distill" / (
        f"{cfg.student.name}-q{cfg.student.qubits}-{dataset_label(cfg.data.dataset)}-"
        f"{(cfg.data.classes or 'all').replace(',', '_')}-{Path(cfg.kd.teacher).name}"
        f"-s{cfg.train.seed}")
    if not args.json:
        print(f"config: {json.dumps(to_dict(cfg))}")
    trained = _EpochCounter()
    try:
        _, result, meta = run_distill(cfg, out, callbacks=[*_callbacks(args), trained])
    except (QdistillError, data_error()) as exc:
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


def _print_json(doc: Any) -> None:
    print(json.dumps(doc, indent=2, default=str))


def _misfits(cfg: DistillConfig) -> list[str]:
    """Every option of ``cfg`` that does not fit its data, each with the flag that fixes
    it (a run stops at the first; a small dataset such as the 8x8 digits misses several
    of distill's defaults, which are the paper's protocol for MNIST). Empty when the data
    cannot be read or nothing is found (the run's own error then stands)."""
    from ..data import parse_classes
    from ..data.raw import load_arrays
    from ..data.tasks import default_val_per_class
    from ..students import build_student, resolve_student
    from ..teachers.models import TEACHERS, build_teacher

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


def parse_teacher_epochs(spec: str | None) -> dict[str, int] | None:
    """"3" -> every teacher 3 epochs; "lenet=10,alexnet=1" -> per teacher (others 10)."""
    if not spec:
        return None
    from ..teachers.models import TEACHERS
    rng = RANGES["kd.teacher_epochs"]
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


def _concrete_device(dev: str) -> str:
    """A grid records the device its runs use, and reuses a finished run only when its
    settings match: "auto" is resolved here, so a grid run with the default on a CPU
    machine is the same as one run with --device cpu (the committed results/)."""
    if dev != "auto":
        return dev
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def grid_options(args: argparse.Namespace) -> Any:
    """The GridOptions of a ``reproduce`` command line."""
    from ..experiments.grids import GridOptions
    dev = _concrete_device(args.device)
    # --head / --angles not given: GridOptions' defaults (the same as distill's)
    student = {k: v for k, v in (("head", args.head), ("angles", args.angles))
               if v is not None}
    opt = GridOptions(quick=args.quick, seeds=args.seeds, epochs=args.epochs,
                      teacher_epochs=parse_teacher_epochs(args.teacher_epochs),
                      shots=args.paper_shots,
                      teachers=tuple(args.teachers.split(",")) if args.teachers else None,
                      only=args.only,
                      datasets=tuple(args.datasets.split(",")) if args.datasets else None,
                      device=dev, data_dir=args.data_dir,
                      experiments=tuple(args.experiments.split(",")) if args.experiments
                      else None, **student)
    return opt


def _workers(args: argparse.Namespace, device: str) -> int:
    """Runs at once: --workers, else one per usable core (one GPU: one at a time)."""
    from ..experiments.executors import usable_cpus
    if args.workers:
        return args.workers
    return 1 if device.startswith("cuda") and args.executor == "local" else usable_cpus()


def cmd_reproduce(args: argparse.Namespace) -> int:
    from ..experiments.reproduce import run_grid
    opt = grid_options(args)
    opt.lockstep = args.lockstep == "on"
    dev = opt.device
    out = Path(args.out) if args.out else (
        Path("runs") / "reproduce" / f"{args.grid}-quick" if args.quick
        else Path("results") / args.grid)
    workers = _workers(args, dev)
    run_grid(args.grid, opt, out, workers=workers, executor=args.executor,
             address=args.address)
    print((out / "table.md").read_text())
    names = (("gains.png", "e2_gains.png") if args.grid == "kd-study"
             else ("accuracy.png", "curves.png", "gains.png"))
    figures = "".join(f", {n}" for n in names if (out / n).exists())
    print(f"results: {out}/ (runs.csv, table.md{figures})")
    if args.robustness:  # every finished student, under shots and noise (no retraining)
        from ..experiments.robustness import grid_robustness
        paths = grid_robustness(out)
        print(paths["md"].read_text())
        print(f"robustness: {paths['md'].parent}/ (robustness.csv, .md, .png)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from ..experiments.sweep import parse_axis, run_sweep
    axes = [parse_axis(spec) for spec in args.grid]  # bad axes fail before any data loads
    cfg = load_config(DistillConfig, args.config, collect_overrides(args))
    cfg.train.device = dev = _concrete_device(cfg.train.device)
    workers = _workers(args, dev)
    out = Path(args.out)
    run_sweep(to_dict(cfg), axes, out, workers=workers, executor=args.executor,
              address=args.address, device=dev, lockstep=args.lockstep == "on")
    print((out / "table.md").read_text())
    print(f"results: {out}/ (runs.csv, table.md, gains.png, runs/)")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from ..data import DataError, dataset_info
    info = dataset_info(args.name, args.data_dir)
    if not info["available"]:  # status 2 and one line naming the sources tried
        raise DataError(info["error"])
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_teacher_train(args: argparse.Namespace) -> int:
    from ..teachers.cache import get_teacher, teacher_dir, train_teacher
    cfg = teacher_config(args)
    if not args.json:
        print(f"config: {json.dumps(to_dict(cfg))}")
    trained = _EpochCounter()
    callbacks = [*_callbacks(args), trained]
    if args.out:
        _, result = train_teacher(cfg, args.out, callbacks=callbacks)
        out, metrics = args.out, result.summary()
    else:
        _, meta = get_teacher(cfg, callbacks=callbacks)
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
    from ..teachers.cache import load_teacher
    from ..training.evaluation import evaluate
    from ..training.tasks import task_of_run
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
    from ..export.openqasm import export_student
    image = args.test_index if args.test_index is not None else args.image
    paths = export_student(args.run, image, args.out, shots=args.shots)
    for path in paths.values():
        print(path)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..experiments.robustness import (
        parse_shots,
        robustness_rows,
        robustness_table,
        write_robustness,
    )
    from ..training.checkpoint import check_writable_dir
    out = Path(args.out) if args.out else (
        Path(args.run[0]) / "robustness" if len(args.run) == 1 else Path("runs") / "robustness")
    from ..training.fit import resolve_device
    check_writable_dir(out, "evaluation output directory")  # before any slow work
    rows = robustness_rows(args.run, parse_shots(args.shots), args.noise or [], args.seeds,
                           args.method, args.trajectories,
                           device=str(resolve_device(args.device)),
                           test_limit=args.test_limit)
    paths = write_robustness(rows, out)
    if args.json:
        _print_json({"rows": rows, "files": {k: str(v) for k, v in paths.items()}})
        return 0
    print(robustness_table(rows))
    print(f"results: {', '.join(str(p) for p in paths.values())}")
    return 0
