"""One spelling, one type and one default per concept across the subcommands.

Walks the parser objects (``qdistill.cli.parser.build_parser``): every option that several
subcommands take must have the same value type, action and effective default in all of
them (the default a run gets when the option is not given: argparse's, else the config
field's, else the student's or the grid's own), and a concept (an option's ``dest``) has
one name everywhere. The exceptions are listed below, each with its reason.
"""

import argparse
import dataclasses

import pytest

from qdistill.cli.options import DeprecatedAlias
from qdistill.cli.parser import build_parser, main
from qdistill.config import DistillConfig, TeacherConfig

# option -> why it differs between subcommands (the test also checks it still does)
EXCEPTIONS = {
    "--train-per-class": "the paper's teacher protocol (all images) vs its student "
                         "protocol (150 per class): teacher train vs distill",
    "--labels-per-class": "the same option as --train-per-class",
    "--test-per-class": "the teacher protocol (all) vs the student protocol (150)",
    "--val-per-class": "the teacher protocol (from --val-fraction) vs the student's (50)",
    "--batch-size": "the paper's teacher protocol (128) vs its student protocol (1)",
    "--shots": "one number of shots (distill, export); evaluate takes a comma list of "
               "them, one setting each",
    "--run": "evaluate compares several runs in one table: repeatable",
    "--seeds": "reproduce: training seeds per cell (3, quick 2); evaluate: seeds of the "
               "shot sampling (3)",
    "--epochs": "reproduce: the grid's own (10, the paper's; paper-v2 --quick 2)",
    "--teacher-epochs": "reproduce trains several teachers: N, or lenet=10,alexnet=1",
}


def leaves(parser, path=()):
    """(command path, parser) of every subcommand that runs something."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaves(sub, (*path, name))


def effective_default(command, action):
    if action.default is not None:
        return action.default
    if "." in action.dest:  # a config key: the config's default (distill or teacher)
        from qdistill.students import STUDENTS
        cfg = DistillConfig() if command in (("distill",), ("sweep",)) else TeacherConfig()
        section, key = action.dest.split(".", 1)
        value = getattr(getattr(cfg, section), key)
        if value is None and section == "student":  # the default student's own default
            value = STUDENTS[cfg.student.name].options.get(key)
        return value
    if command == ("reproduce",):
        from qdistill.experiments.grids import GridOptions
        fields = {f.name: f.default for f in dataclasses.fields(GridOptions)}
        return fields.get(action.dest)
    return None


def signature(command, action):
    return {
        "type": getattr(action.type, "__name__", "str") if action.type else "str",
        "action": type(action).__name__, "nargs": action.nargs,
        "choices": tuple(action.choices) if action.choices else None,
        "default": effective_default(command, action),
    }


def options():
    """{option string: {command: signature}} and {dest tail: {command: option strings}}."""
    by_option, by_dest = {}, {}
    for command, parser in leaves(build_parser()):
        for action in parser._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, DeprecatedAlias):  # an old spelling, kept working
                continue
            for opt in action.option_strings:
                by_option.setdefault(opt, {})[command] = signature(command, action)
            tail = action.dest.rpartition(".")[2]
            by_dest.setdefault(tail, {}).setdefault(command, set()).update(
                action.option_strings)
    return by_option, by_dest


def test_shared_options_have_one_type_and_one_default():
    by_option, _ = options()
    differ = {}
    for opt, per_command in by_option.items():
        if len(per_command) > 1 and len({repr(s) for s in per_command.values()}) > 1:
            differ[opt] = {" ".join(c): s for c, s in per_command.items()}
    unexplained = {o: d for o, d in differ.items() if o not in EXCEPTIONS}
    assert not unexplained, unexplained
    stale = sorted(set(EXCEPTIONS) - set(differ))
    assert not stale, f"listed as exceptions but now consistent: {stale}"


def test_the_decided_spellings():
    by_option, by_dest = options()
    # --device: auto|cpu|cuda|cuda:N, default auto, wherever a command runs a model
    device = by_option["--device"]
    assert {" ".join(c) for c in device} == {"teacher train", "distill", "reproduce",
                                              "sweep", "evaluate"}
    assert all(s["type"] == "device" and s["default"] == "auto" for s in device.values())
    # --head / --angles: the same default in distill and reproduce
    assert {s["default"] for s in by_option["--head"].values()} == {"logprob"}
    assert {s["default"] for s in by_option["--angles"].values()} == {"pi"}
    # --shots is a number of shots everywhere; reproduce's switch has its own name
    assert ("reproduce",) not in by_option["--shots"]
    assert by_option["--paper-shots"][("reproduce",)]["action"] == "_StoreTrueAction"
    assert {s["type"] for c, s in by_option["--shots"].items() if c != ("evaluate",)} == {
        "int"}
    # a run directory is --run everywhere (teacher eval's --checkpoint is an old alias)
    assert {" ".join(c) for c in by_option["--run"]} == {"teacher eval", "export",
                                                         "evaluate"}
    # --json wherever results are printed
    assert {"teacher train", "teacher eval", "distill", "evaluate", "cache list"} <= {
        " ".join(c) for c in by_option["--json"]}
    # one name per concept: a dest has the same option strings in every command
    many = {d: {" ".join(c): sorted(o) for c, o in per.items()}
            for d, per in by_dest.items() if len({frozenset(o) for o in per.values()}) > 1}
    assert not many, many


def test_help_states_each_commands_own_defaults(capsys):
    assert main(["distill", "--help"]) == 0
    distill = " ".join(capsys.readouterr().out.split())
    assert "--batch-size TRAIN.BATCH_SIZE default 1 (the paper's student protocol)" in distill
    assert "keep the first N training images of each class (default 150" in distill
    from qdistill.teachers.models import TEACHERS
    teacher_help = distill.split("--teacher KD.TEACHER none", 1)[1].split(
        "--teacher-weights FILE ")[0]
    for form in [*TEACHERS, "FILE.py:NAME", "FILE.onnx", "run directory"]:
        assert form in teacher_help, form
    assert main(["teacher", "train", "--help"]) == 0
    teacher = " ".join(capsys.readouterr().out.split())
    assert "default 128 (the paper's teacher protocol)" in teacher
    assert "(default all" in teacher


@pytest.mark.parametrize("command", [" ".join(c) for c, _ in leaves(build_parser())])
def test_every_subcommand_has_help(command, capsys):
    assert main([*command.split(), "--help"]) == 0
    assert "usage: qdistill" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["distill", "--device", "gpu"], "argument --device: expected auto, cpu, cuda or "
                                     "cuda:N, got 'gpu'"),
    (["evaluate", "--run", "x", "--device", "cuda:x"], "expected auto, cpu, cuda or cuda:N"),
    (["reproduce", "paper-v1", "--shots"], "on reproduce, --shots is now --paper-shots"),
    (["teacher", "eval"], "one of the arguments --run --checkpoint is required"),
])
def test_bad_options_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("qdistill: error:") and message in err and err.count("\n") == 1


def test_reproduce_options_map_to_the_grid(monkeypatch):
    """reproduce's defaults are distill's; auto is resolved to the device the runs use."""
    import torch

    from qdistill.cli.commands import grid_options
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    opt = grid_options(build_parser().parse_args(["reproduce", "paper-v1"]))
    assert (opt.head, opt.angles, opt.shots, opt.device) == ("logprob", "pi", False, "cpu")
    opt = grid_options(build_parser().parse_args(
        ["reproduce", "paper-v1", "--head", "paper", "--paper-shots", "--device", "cpu"]))
    assert (opt.head, opt.shots, opt.device) == ("paper", True, "cpu")


# The commands of results/README.md and docs/reproduction.md, as committed: per
# directory, every command that wrote runs there. Teachers train for 10 epochs (the
# default, the paper's schedule).
def paper_v1(*options, only="*_q?_[nlae]*"):
    return [["paper-v1", "--lockstep", "off", *options, "--only", only]]  # one at a time


COMMITTED = {
    "paper-v1": paper_v1("--head", "paper", only="*_q?_[nlaeq]*"),
    "paper-v1-logprob": paper_v1("--head", "logprob", only="*_q?_[nlaeq]*"),
    "paper-v1-shots": paper_v1("--head", "paper", "--paper-shots"),
    "paper-v1-halfpi": paper_v1("--head", "paper", "--angles", "half-pi"),
    "paper-v2": [["paper-v2", "--lockstep", "off"]],
}


@pytest.mark.parametrize("directory", sorted(COMMITTED))
def test_committed_commands_still_find_their_runs_finished(directory, monkeypatch):
    """With today's defaults (device auto on a CPU machine, --head, --paper-shots) the
    committed commands ask for exactly the committed runs: reproduce reuses them."""
    import fnmatch
    from pathlib import Path

    import torch

    from qdistill.cli.commands import grid_options
    from qdistill.experiments import grids, runner

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runs_dir = Path(__file__).resolve().parents[1] / "results" / directory / "runs"
    found: set[str] = set()
    asked: set[str] = set()
    for argv in COMMITTED[directory]:
        opt = grid_options(build_parser().parse_args(["reproduce", *argv]))
        for run in grids.GRIDS[argv[0]](opt):
            if opt.only and not fnmatch.fnmatch(run.run_id, opt.only):
                continue
            asked.add(run.run_id)
            if (runs_dir / run.run_id / "row.json").is_file():
                runner._check_same_settings(runs_dir / run.run_id, run.cfg)
                found.add(run.run_id)
    # every committed run is asked for, and the commands ask for nothing more
    assert len(found) == len(list(runs_dir.glob("*/row.json"))) > 0
    assert asked == found, sorted(asked - found)[:5]
