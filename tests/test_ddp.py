"""torchrun + DistributedDataParallel on CPU (gloo, 2 processes) against one process.

With the global batch fixed, rank r of N takes positions r, r+N, ... of every
single-process batch (distributed.EpochSampler), so the averaged DDP gradient is the
single-process gradient up to float summation order. Tolerance: 1e-4 on the weights
and on the loss after 2 epochs (seen: ~1e-8); accuracies identical up to one image (seen:
identical), since weights that differ by float rounding may flip the argmax of an image
whose top two logits are a near tie. One exception:
a parameter whose gradient is exactly zero in theory (the paper-v2 block's last RZ,
which commutes with the Z measurement) gets float-noise gradients that Adam
normalises into steps of up to lr, so it may drift by up to lr x steps — harmlessly,
since it cannot change any output.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from qdistill.training.distributed import EpochSampler

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[1] / "src"))


def _qdistill(args: list[str], nproc: int) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "qdistill"] if nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "qdistill"]
    proc = subprocess.run(launch + args, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _compare(one: Path, two: Path, smallest_split: int, inert: tuple[str, ...] = ()) -> None:
    h1 = json.loads((one / "result.json").read_text())["history"]
    h2 = json.loads((two / "result.json").read_text())["history"]
    assert len(h1) == len(h2) == 2
    for a, b in zip(h1, h2, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        for key in ("train_acc", "val_acc", "test_acc"):  # at most one image apart
            assert abs(a[key] - b[key]) <= 1 / smallest_split + 1e-9, (key, a[key], b[key])
    w1, w2 = load_file(one / "best.safetensors"), load_file(two / "best.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        if k not in inert:
            torch.testing.assert_close(w1[k], w2[k], atol=1e-4, rtol=0, msg=k)
    # Only rank 0 wrote: one metrics line per epoch, no duplicates.
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 2


def test_epoch_sampler_shards_the_single_process_batches():
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    shards = []
    for r in range(2):
        s = EpochSampler(10, lambda e: order, num_replicas=2, rank=r)
        s.set_epoch(3)
        shards.append(s.indices())
    # Global batch 4 = local batch 2 on each rank: step s covers order[4s:4s+4].
    for step in range(2):
        got = torch.cat([sh[2 * step:2 * step + 2] for sh in shards])
        assert sorted(got.tolist()) == sorted(order[4 * step:4 * step + 4].tolist())
    one = EpochSampler(10, lambda e: order)
    one.set_epoch(3)
    assert one.indices().tolist() == order.tolist() == list(one)


def test_teacher_ddp_matches_single_process(tmp_path):
    # 5 classes x 64 images = 320, a multiple of the global batch 32: no padding.
    args = ["teacher", "train", "--arch", "mlp", "--dataset", "digits", "--classes", "0-4",
            "--train-per-class", "64", "--val-per-class", "20", "--epochs", "2",
            "--batch-size", "32", "--device", "cpu"]
    _qdistill([*args, "--out", str(tmp_path / "one")], 1)
    proc = _qdistill([*args, "--out", str(tmp_path / "ddp")], 2)
    assert proc.stdout.count("test accuracy") == 1  # rank 1 prints nothing
    _compare(tmp_path / "one", tmp_path / "ddp", smallest_split=5 * 20)  # validation
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2


def test_distilled_quantum_student_ddp_matches_single_process(tmp_path):
    teacher = ["teacher", "train", "--arch", "mlp", "--dataset", "digits", "--classes",
               "0-3", "--epochs", "2", "--batch-size", "32", "--out", str(tmp_path / "t")]
    _qdistill(teacher, 1)
    args = ["distill", "--teacher", str(tmp_path / "t"), "--student", "paper-v2",
            "--qubits", "4", "--dataset", "digits", "--classes", "0-3",
            "--train-per-class", "40", "--val-per-class", "10", "--test-per-class", "20",
            "--epochs", "2", "--batch-size", "16", "--device", "cpu"]
    _qdistill([*args, "--out", str(tmp_path / "one")], 1)
    _qdistill([*args, "--out", str(tmp_path / "ddp")], 2)
    _compare(tmp_path / "one", tmp_path / "ddp", smallest_split=4 * 10,  # validation
             inert=("quantum.ansatz.shared",))
    # ... and the inert parameter's drift is the RZ before measurement only.
    w1, w2 = (load_file(tmp_path / d / "best.safetensors") for d in ("one", "ddp"))
    drift = (w1["quantum.ansatz.shared"] - w2["quantum.ansatz.shared"]).abs()[0]
    assert drift[:2].max() < 1e-4 and drift[2] < 1e-3 * 2 * 10  # lr x steps


def test_ddp_refuses_odd_global_batch(tmp_path):
    bad = _run_fail(["teacher", "train", "--arch", "mlp", "--dataset", "digits",
                     "--epochs", "1", "--batch-size", "33", "--out", str(tmp_path / "x")])
    assert "multiple of the 2 processes" in bad


def test_torchrun_refuses_grids(tmp_path, monkeypatch, capsys):
    from qdistill.cli.parser import main

    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets; refused before joining
    assert main(["reproduce", "paper-v1", "--quick", "--out", str(tmp_path / "g")]) == 2
    assert "torchrun runs one training" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def _run_fail(args: list[str]) -> str:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone",
              "--nproc-per-node=2", "-m", "qdistill"]
    proc = subprocess.run(launch + args, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    # Each rank prints one line and exits 2; the traceback torchrun's own launcher
    # prints about failed children goes through torch only, never through qdistill.
    assert proc.stderr.count("qdistill: error:") == 2
    assert "qdistill/" not in "".join(ln for ln in proc.stderr.splitlines()
                                      if ln.strip().startswith("File "))
    return proc.stderr
