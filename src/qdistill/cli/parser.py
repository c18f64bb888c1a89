"""The ``qdistill`` command line.

    qdistill data info mnist
    qdistill teacher train --arch lenet --dataset mnist --classes 0-5
    qdistill teacher eval --run ~/.cache/qdistill/teachers/lenet-mnist-0-5-<key>

Every subcommand has ``--help``. A user error prints one line and exits with status 2;
``--debug`` shows the traceback instead. An option means the same everywhere (one
spelling, type and default: tests/test_cli_options.py); ``qdistill cache`` and
``qdistill completion`` live in cache.py and completion.py; the command functions in
commands.py, the shared options in options.py.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from .. import __version__
from ..config import MAX_SHOTS, DistillConfig, Range, TeacherConfig
from ..errors import ConfigError, QdistillError
from ..logs import console
from .commands import (
    cmd_data_info,
    cmd_distill,
    cmd_evaluate,
    cmd_export,
    cmd_reproduce,
    cmd_sweep,
    cmd_teacher_eval,
    cmd_teacher_train,
)
from .options import (
    ANGLES_HELP,
    HEAD_HELP,
    RANGES,
    DeprecatedAlias,
    Parser,
    common_options,
    data_error,
    data_options,
    device_option,
    json_option,
    number,
    pool_options,
    student_options,
    train_options,
)


def _run_options(p: argparse.ArgumentParser, tracking: bool = True) -> None:
    """What a distillation run takes: the student, the data, training, --config/--set."""
    student_options(p)
    data_options(p, defaults=DistillConfig().data)
    train_options(p, defaults=DistillConfig().train, protocol="student")
    common_options(p, tracking=tracking)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    data_options(ttrain, defaults=TeacherConfig().data)
    train_options(ttrain, defaults=TeacherConfig().train, protocol="teacher")
    common_options(ttrain)
    json_option(ttrain)
    ttrain.set_defaults(func=cmd_teacher_train)
    teval = tsub.add_parser("eval", help="test accuracy of a trained teacher (JSON)")
    which_run = teval.add_mutually_exclusive_group(required=True)
    which_run.add_argument("--run", help="teacher run directory (teacher train --out, or "
                                         "one in the teacher cache)")
    which_run.add_argument("--checkpoint", dest="run", action=DeprecatedAlias, new="--run",
                           help="deprecated spelling of --run")
    teval.add_argument("--data-dir", help="directory of IDX files / CIFAR-10 batches")
    json_option(teval)
    teval.set_defaults(func=cmd_teacher_eval)

    distill = sub.add_parser(
        "distill", help="train one quantum student, with or without a teacher",
        description="Train a quantum student on the paper's protocol (first 150 images "
                    "per class, batch 1, Adam 1e-3, 10 epochs) with KD from a teacher "
                    "(trained once and cached) or, with --teacher none, without.")
    distill.add_argument("--out", help="run directory (default runs/distill/<name>); a "
                                       "finished run there with the same config is reused")
    _run_options(distill)
    json_option(distill)
    distill.set_defaults(func=cmd_distill)

    rep = sub.add_parser(
        "reproduce", help="run a paper grid with seeds and write tables and plots",
        description="Reproduce arXiv:2311.13810's grid: students with and without each "
                    "teacher, several seeds, selection on validation, the paper's "
                    "numbers beside ours. Finished runs are not redone.")
    rep.add_argument("grid", choices=["paper-v1", "paper-v2", "kd-study"],
                     help="which grid: the paper's v1 / v2 students, or the pre-registered "
                          "KD study (docs/kd-study.md)")
    rep.add_argument("--quick", action="store_true",
                     help="reduced grid (one dataset and setting, 2 seeds): < 5 min on 2 cores")
    rep.add_argument("--seeds", type=number(int, Range(1, 100)),
                     help="seeds per cell (default 3; quick 2) [1..100]")
    rep.add_argument("--epochs", type=number(int, RANGES["train.epochs"]),
                     help=f"student epochs (default 10, the paper's) "
                          f"[{RANGES['train.epochs'].text()}]")
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
    rep.add_argument("--experiments", help="kd-study only: comma-separated subset of E1, "
                                           "E2, E2S2 (E2 stage 2), E3, E4 (default: all)")
    pool_options(rep)
    device_option(rep)
    rep.add_argument("--data-dir", help="directory of IDX files")
    rep.add_argument("--out", help="default results/<grid> (quick: runs/reproduce/...)")
    rep.add_argument("--robustness", action="store_true",
                     help="then evaluate every student exact, with 100/1000/10000 shots and "
                          "under depolarizing 0.001, 0.01 and preset:ibm-heron noise (3 "
                          "seeds) into OUT/robustness/; a student already in its "
                          "robustness.csv (same evaluations, same exact accuracy) is not "
                          "evaluated again")
    rep.set_defaults(func=cmd_reproduce)

    sw = sub.add_parser(
        "sweep", help="a grid over any config keys, each run paired with its no-teacher "
                      "baseline",
        description="Train every combination of the --grid values on the base config "
                    "(the options of distill, or --config), plus the no-teacher baseline "
                    "of each seed, and write runs.csv, table.md and gains.png (paired gain "
                    "over the baseline, mean and 95 percent interval per cell). Resumable: "
                    "finished runs are not redone.",
        epilog="example: qdistill sweep --grid kd.temperature=1,2,4,8 kd.alpha=0.1,0.5,0.9 "
               "seed=0-4 --student paper-v2 --qubits 4 --dataset digits --classes 0-3 "
               "--out sweeps/t-alpha")
    sw.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2",
                    help="axes: a config key (kd.temperature, train.lr, kd.options.beta, "
                         "...; short: seed, temperature, alpha, loss, teacher, epochs, lr, "
                         "qubits, transfer, labels_per_class) = values, comma-separated "
                         "(';' when a value holds commas); integers also as ranges: seed=0-4")
    sw.add_argument("--out", required=True, help="sweep directory (runs/, runs.csv, "
                                                "table.md, gains.png)")
    _run_options(sw, tracking=False)  # the base config of every run
    pool_options(sw)
    sw.set_defaults(func=cmd_sweep)

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
    device_option(ev)
    ev.add_argument("--out", help="output directory (default <run>/robustness)")
    ev.add_argument("--verbose", action="store_true", help="print every evaluation")
    json_option(ev)
    ev.set_defaults(func=cmd_evaluate)

    from .cache import add_cache_parser
    from .completion import add_completion_parser
    add_cache_parser(sub, json_option)
    add_completion_parser(sub, parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    Parser.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (one line, status 2)
        return exc.code if isinstance(exc.code, int) else 2
    # Progress lines (the qdistill logger's records) as plain text: on stdout, or on
    # stderr when stdout holds --json output; --verbose adds the DEBUG ones.
    lines = console(stderr=bool(getattr(args, "json", False)),
                    level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO)
    try:
        with lines, _torchrun(args):
            status = args.func(args)
        for note in getattr(args, "deprecated", None) or []:
            print(f"qdistill: warning: {note}", file=sys.stderr)
        return status
    except (QdistillError, data_error()) as exc:
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
    from ..training import distributed
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


if __name__ == "__main__":
    sys.exit(main())
