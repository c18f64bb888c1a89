"""Lockstep training (qdistill.lockstep) gives each run what it gets alone, on CPU.

Runs of one architecture trained in lockstep against the same runs trained one by one
(``run_distill``): the same per-epoch validation and test accuracies, the same selected
epoch, final weights within 1e-5, the same files (what differs is float rounding: a
grouped convolution or batched GEMM sums in another order; each run's random stream,
dropout masks and shots included, is the solo run's, so the RNG state in every
checkpoint is identical), resume from a group killed mid-grid, and ``reproduce``'s
grouping. Small settings (8x8 digits, or MNIST with a few images per class for the
paper-v1 student's 16x16 minimum) keep each test to seconds.
"""

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch

from qdistill.config import DataConfig, DistillConfig, KDConfig, StudentConfig, TrainConfig
from qdistill.distillation.run import run_distill
from qdistill.errors import QdistillError
from qdistill.lockstep import lockstep_key, native, plan_groups, run_lockstep
from qdistill.lockstep import loop as lockstep_loop
from qdistill.training import checkpoint
from qdistill.training.fit import cpu_threads

WEIGHT_ATOL = 1e-5
# 24 training images: 3 epochs of 24 batch-1 steps. Longer runs drift apart by more
# than rounding (see test_grid_of_six_runs_matches_one_by_one).
MNIST = DataConfig(dataset="mnist", classes="0-5", train_per_class=4, test_per_class=10,
                   val_per_class=3)
DIGITS = DataConfig(dataset="digits", classes="0-3", train_per_class=24, test_per_class=15,
                    val_per_class=8)


# The paper-v2 block's last RZ angle: see test_paper_v2_vmap_path.
GAUGE = {"quantum.ansatz.shared"}


def v1(teacher: str, seed: int, shots: int | None = None, epochs: int = 3) -> DistillConfig:
    """The paper's v1 student (notebook head, Dropout2d + Dropout in the front end),
    the paper's loss, batch 1; an MLP teacher (trained once per session, fast)."""
    return DistillConfig(
        student=StudentConfig(name="paper-v1", qubits=3, head="paper", shots=shots),
        kd=KDConfig(teacher=teacher, teacher_epochs=1, variant="paper"),
        data=MNIST, train=TrainConfig(epochs=epochs, batch_size=1, seed=seed, device="cpu"))


def digits(student: StudentConfig, teacher: str, seed: int, **kd) -> DistillConfig:
    train = {k: kd.pop(k) for k in ("lr", "weight_decay") if k in kd}
    return DistillConfig(
        student=student, kd=KDConfig(teacher=teacher, teacher_epochs=1, **kd), data=DIGITS,
        train=TrainConfig(epochs=3, batch_size=4, seed=seed, device="cpu", **train))


def solo(cfgs, root: Path):
    with cpu_threads(1):
        return [run_distill(c, root / f"solo{i}") for i, c in enumerate(cfgs)]


def lockstep(cfgs, root: Path, **kw):
    with cpu_threads(1):
        return run_lockstep(cfgs, [root / f"lock{i}" for i in range(len(cfgs))],
                            **kw)


def accuracies(result):
    return [(h["epoch"], h["val_acc"], h["test_acc"]) for h in result.history]


def assert_same_run(a, b, skip=()):
    """Two run_distill outcomes (student, FitResult, meta): same accuracies every epoch,
    same selection, weights within WEIGHT_ATOL (but ``skip``)."""
    (ma, ra, meta_a), (mb, rb, meta_b) = a, b
    assert accuracies(ra) == accuracies(rb)
    assert (ra.best_epoch, ra.val_acc, ra.test_acc) == (rb.best_epoch, rb.val_acc, rb.test_acc)
    assert meta_a == meta_b
    sa, sb = ma.state_dict(), mb.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if k not in skip:
            assert torch.allclose(sa[k], sb[k], rtol=0, atol=WEIGHT_ATOL), k
    for ha, hb in zip(ra.history, rb.history, strict=True):
        assert ha["train_acc"] == hb["train_acc"]
        assert ha["train_loss"] == pytest.approx(hb["train_loss"], rel=1e-5)


def _strip_floats(obj):
    """A run file's JSON without wall-clock seconds and with training losses rounded
    (they are sums over the epoch, equal to float rounding)."""
    if isinstance(obj, dict):
        return {k: (round(v, 4) if k == "train_loss" else _strip_floats(v))
                for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_strip_floats(v) for v in obj]
    return obj


def assert_same_files(a: Path, b: Path):
    """The same files; the same JSON but for seconds and rounding; the same tensors to
    WEIGHT_ATOL, the RNG state exactly."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert names == ["best.json", "best.safetensors", "config.json", "last.json",
                     "last.safetensors", "metrics.jsonl", "result.json"]
    for name in ("config.json", "result.json", "last.json", "best.json"):
        ja, jb = (json.loads((d / name).read_text()) for d in (a, b))
        for j in (ja, jb):
            j.pop("weights_sha256", None)  # of the safetensors bytes: compared below
        assert _strip_floats(ja) == _strip_floats(jb), name
    lines = [[_strip_floats(json.loads(x)) for x in (d / "metrics.jsonl").read_text().splitlines()]
             for d in (a, b)]
    assert lines[0] == lines[1]
    for stem in ("last", "best"):
        ta, _ = checkpoint.load(a / stem)
        tb, _ = checkpoint.load(b / stem)
        assert ta.keys() == tb.keys()
        for k in ta:
            if k.startswith("rng.") or k.endswith(".step"):
                assert torch.equal(ta[k], tb[k]), k
            elif "shared" not in k:  # see test_paper_v2_vmap_path
                assert torch.allclose(ta[k].float(), tb[k].float(), rtol=0,
                                      atol=WEIGHT_ATOL), k


@pytest.mark.parametrize("shots, kernel", [(None, "native"), (500, "native"),
                                           (None, "proxies")],
                         ids=["exact", "shots", "exact-proxies"])
def test_grid_of_six_runs_matches_one_by_one(tmp_path, monkeypatch, shots, kernel):
    """The issue's equivalence test: 3 seeds x {no teacher, a teacher}, paper-v1 with
    its dropout layers, exact probabilities and finite shots.

    The run-batched kernels (a grouped convolution, batched GEMMs) round differently
    from the solo ones (~1e-7 relative per step); over 72 steps the weights agree to
    ~4e-7. Over hundreds of batch-1 steps a pre-activation sitting at a ReLU's or max
    pool's boundary now and then falls on the other side in one path, and that step's
    gradient then differs by O(1) for one unit: weights drift apart by 1e-5..1e-3
    (as two solo runs on different CPUs would). Bit-identity is out of reach: besides
    those kernels, elementwise tanh / sigmoid / exp round differently in their SIMD and
    scalar paths, and a folded batch puts a run's values at other vector positions.
    What is exact: each run's random stream (the RNG state in every checkpoint, hence
    every dropout mask and shot draw), its data order and its Adam step count.

    ``kernel``: the front end through the native kernel (the default where a C compiler
    is found, test_lockstep_native.py) or through the per-layer proxies."""
    if kernel == "proxies":
        monkeypatch.setenv(native.ENV_SWITCH, "0")
    elif native.library() is None:
        pytest.skip("no C compiler on PATH: the native kernel is not built")
    cfgs = [v1(t, s, shots) for t in ("none", "mlp") for s in (0, 1, 2)]
    alone = solo(cfgs, tmp_path)
    together = lockstep(cfgs, tmp_path)
    for i, (a, b) in enumerate(zip(alone, together, strict=True)):
        assert not isinstance(b, BaseException), b
        assert_same_run(a, b)
        assert_same_files(tmp_path / f"solo{i}", tmp_path / f"lock{i}")
    # the runs differ from one another (seeds, teachers): nothing was shared by mistake
    assert len({tuple(accuracies(r)) for _, r, _ in together}) > 1


def test_per_run_hyperparameters(tmp_path):
    """A sweep in one group: lr, weight decay, T and alpha per run, the Hinton loss,
    the fully quantum student (its ansatz run run by run, its readout scale a per-run
    scalar)."""
    student = StudentConfig(name="quantum", qubits=4, reduction="avgpool", layers=2,
                            readout="z")
    cfgs = [digits(student, "none", 0, lr=0.01),
            digits(student, "mlp", 1, temperature=2.0, alpha=0.5, lr=0.02),
            digits(student, "mlp", 2, temperature=4.0, alpha=0.9, weight_decay=1e-3),
            digits(student, "mlp", 0, temperature=3.0, alpha=0.0)]
    assert len({lockstep_key(c) for c in cfgs}) == 1
    for a, b in zip(solo(cfgs, tmp_path), lockstep(cfgs, tmp_path), strict=True):
        assert_same_run(a, b)


def test_paper_v2_vmap_path(tmp_path):
    """paper-v2 (FC reduction batched, its v2 block through torch.func.vmap). The
    block's last RZ angle sits right before a <Z> measurement, with which it commutes:
    its gradient is 0 in exact arithmetic and rounding noise in practice, which Adam
    normalises into steps of about lr either way, so that one angle differs between
    the two paths (it changes no output); every other weight agrees to 1e-5."""
    student = StudentConfig(name="paper-v2", qubits=4, reduction="fc")
    cfgs = [digits(student, t, s) for t in ("none", "mlp") for s in (0, 1)]
    alone, together = solo(cfgs, tmp_path), lockstep(cfgs, tmp_path)
    images = torch.rand(16, 1, 8, 8)
    for a, b in zip(alone, together, strict=True):
        assert_same_run(a, b, skip=GAUGE)
        shared_a, shared_b = (m.state_dict()["quantum.ansatz.shared"] for m in (a[0], b[0]))
        assert torch.allclose(shared_a[:, :2], shared_b[:, :2], atol=WEIGHT_ATOL)
        with torch.no_grad():
            assert torch.allclose(a[0](images), b[0](images), atol=WEIGHT_ATOL)


def _kill_after(monkeypatch, writes: int):
    """Make the lockstep loop die (as from SIGKILL: no handler runs) after ``writes``
    epoch checkpoints."""
    real = lockstep_loop.write_epoch
    count = {"n": 0}

    def write(*args, **kwargs):
        if count["n"] == writes:
            raise KeyboardInterrupt
        count["n"] += 1
        real(*args, **kwargs)

    monkeypatch.setattr(lockstep_loop, "write_epoch", write)
    return real


def test_killed_group_resumes_from_each_runs_checkpoint(tmp_path, monkeypatch):
    """Killed while writing epoch 2's checkpoints: every run is after epoch 1 (an epoch's
    files are committed together); killed again with files written one at a time (2 of
    4 runs done): rerun, each run resumes after its own last epoch (2 or 1), and the
    results are the uninterrupted ones; a run resumed solo gives them too, and finished
    runs are not retrained."""
    student = StudentConfig(name="paper-v2", qubits=3, reduction="crop")
    cfgs = [digits(student, t, s) for t in ("none", "mlp") for s in (0, 1)]
    whole = lockstep(cfgs, tmp_path / "whole")

    def epochs():
        return sorted(json.loads((tmp_path / f"lock{i}" / "last.json").read_text())["epoch"]
                      for i in range(len(cfgs)))

    real = _kill_after(monkeypatch, len(cfgs) + 2)
    with pytest.raises(KeyboardInterrupt):
        lockstep(cfgs, tmp_path)
    assert epochs() == [1, 1, 1, 1]  # an epoch's files are committed together
    # one file at a time, so that the runs stop after different epochs
    monkeypatch.setattr(lockstep_loop, "write_epoch", real)
    monkeypatch.setattr(lockstep_loop.checkpoint, "deferred_sync", contextlib.nullcontext)
    _kill_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        lockstep(cfgs, tmp_path)
    assert epochs() == [1, 1, 2, 2]
    monkeypatch.setattr(lockstep_loop, "write_epoch", real)
    # run 3 resumes solo (run_distill), the others in lockstep: either path reads the
    # other's checkpoints
    with cpu_threads(1):
        alone = run_distill(cfgs[3], tmp_path / "lock3")
    resumed = lockstep(cfgs[:3], tmp_path)
    for a, b in zip(whole, [*resumed, alone], strict=True):
        assert_same_run(a, b, skip=GAUGE)
        assert [h["epoch"] for h in b[1].history] == [1, 2, 3]
    # Finished: read back, nothing trained.
    monkeypatch.setattr(lockstep_loop.Lockstep, "train_epoch", None)
    again = lockstep(cfgs, tmp_path)
    for a, b in zip(whole, again, strict=True):
        assert_same_run(a, b, skip=GAUGE)


def test_a_diverging_run_stops_alone_with_fits_error(tmp_path, monkeypatch):
    """NaN soft targets for one run: that run stops with fit's error in epoch 1 (no
    directory written); the others finish as they do alone."""
    import qdistill.lockstep

    student = StudentConfig(name="paper-v2", qubits=3, reduction="crop")
    cfgs = [digits(student, "mlp", s) for s in (0, 1, 2)]
    alone = solo(cfgs, tmp_path)
    real = qdistill.lockstep.prepare

    def poisoned(cfg, out):
        prep = real(cfg, out)
        if cfg.train.seed == 1:
            prep.soft_targets = torch.full_like(prep.soft_targets, math.nan)
        return prep

    monkeypatch.setattr(qdistill.lockstep, "prepare", poisoned)
    together = lockstep(cfgs, tmp_path)
    assert isinstance(together[1], QdistillError)
    assert "training loss became non-finite (NaN or inf: nan) in epoch 1; no epoch had " \
           "finished, so no checkpoint" in str(together[1])
    assert not (tmp_path / "lock1").exists()
    for i in (0, 2):
        assert_same_run(alone[i], together[i], skip=GAUGE)


def test_refuses_what_a_solo_run_refuses(tmp_path):
    bad = digits(StudentConfig(name="paper-v2", qubits=3, reduction="nope"), "none", 0)
    good = digits(StudentConfig(name="paper-v2", qubits=3, reduction="crop"), "none", 0)
    with pytest.raises(QdistillError) as solo_error:
        run_distill(bad, tmp_path / "solo")
    out = lockstep([bad, good], tmp_path)
    assert isinstance(out[0], QdistillError) and str(out[0]) == str(solo_error.value)
    assert not isinstance(out[1], BaseException)


def test_what_cannot_be_batched_trains_solo(tmp_path, monkeypatch):
    """A group the run-batched model refuses (here: forced) trains run by run, with the
    solo results."""
    from qdistill.lockstep import twin

    def refuse(*_args, **_kwargs):
        raise twin.Unsupported("test")

    monkeypatch.setattr(lockstep_loop, "Twin", refuse)
    student = StudentConfig(name="paper-v2", qubits=3, reduction="crop")
    cfgs = [digits(student, "none", s) for s in (0, 1)]
    for a, b in zip(solo(cfgs, tmp_path), lockstep(cfgs, tmp_path), strict=True):
        assert_same_run(a, b)  # trained solo: bit for bit


def test_reproduce_groups_runs_that_can_share_a_step():
    base = digits(StudentConfig(name="paper-v2", qubits=3, reduction="crop"), "none", 0)
    items = [("a", base),
             ("b", digits(base.student, "mlp", 1, temperature=2.0, lr=0.1)),
             ("c", digits(StudentConfig(name="paper-v2", qubits=4), "none", 0)),
             ("d", digits(StudentConfig(name="paper-v2", qubits=3, reduction="crop",
                                        noise="depolarizing=0.01"), "none", 0))]
    groups = plan_groups(items, workers=1, cap=lambda cfg: 10)
    assert sorted(map(sorted, groups)) == [["a", "b"], ["c"], ["d"]]
    assert lockstep_key(items[3][1]) is None  # noise: solo
    # capped by memory, then halved until every worker has a group
    many = [(f"r{i}", digits(base.student, "none", i)) for i in range(10)]
    assert sorted(map(len, plan_groups(many, workers=1, cap=lambda cfg: 4))) == [3, 3, 4]
    assert sorted(map(len, plan_groups(many[:4], workers=2, cap=lambda cfg: 10))) == [2, 2]
    # the default cap comes from a memory estimate
    from qdistill.lockstep import max_group_size
    assert 1 <= max_group_size(base) <= 256


def test_cli_lockstep_switch(tmp_path, monkeypatch):
    from qdistill import cli
    from qdistill.experiments import reproduce

    seen = {}

    def fake_run_grid(grid, opt, out, **kwargs):
        seen["lockstep"] = opt.lockstep
        out.mkdir(parents=True, exist_ok=True)
        (out / "table.md").write_text("table\n")

    monkeypatch.setattr(reproduce, "run_grid", fake_run_grid)
    for flag, want in ((["--lockstep", "off"], False), ([], True)):  # on by default
        assert cli.main(["reproduce", "paper-v1", "--quick", "--out", str(tmp_path / "o"),
                         *flag]) == 0
        assert seen["lockstep"] is want
