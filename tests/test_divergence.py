"""A run whose loss or outputs become non-finite (NaN, +inf, -inf) stops with one clear
line naming the epoch, through the real command line, and keeps the checkpoint of the
last good epoch (no checkpoint when epoch 1 diverged)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_bad_input import TEACHER, refused, snapshot

from qdistill.cli.parser import main
from qdistill.teachers.models import MLP, TEACHERS

# Divergence is injected, not provoked: a huge --lr overflows float32 into NaN on one
# CPU and into +-inf on another (AVX-512 MKL GEMMs), so each case here makes the loss or
# the outputs non-finite on purpose, at a chosen epoch, with NaN, +inf and -inf alike.
# TEACHER with --batch-size 4096 takes one Adam step per epoch (the batch holds every
# training image), so "step k" and "epoch k" are the same thing below.
NON_FINITE = [float("nan"), float("inf"), float("-inf")]


def _poison_loss(monkeypatch, value: float, from_call: int) -> None:
    """The training loss (F.cross_entropy) gets ``value`` added from its from_call-th
    call on; the gradient, and so the weights, stay those of the real loss."""
    real, calls = F.cross_entropy, [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        out = real(*args, **kwargs)
        return out + value if calls[0] >= from_call else out

    monkeypatch.setattr(F, "cross_entropy", loss)


def _diverging_mlp(monkeypatch, value: float, after_steps: int) -> None:
    """``--arch mlp`` builds an MLP whose outputs get ``value`` added once it has taken
    ``after_steps`` optimiser steps. The count is a buffer, so it is checkpointed and a
    resumed run diverges at the same epoch as the first."""

    class DivergingMLP(MLP):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.register_buffer("steps_taken", torch.zeros(1, dtype=torch.long))

        def forward(self, x):
            out = super().forward(x)
            done = int(self.steps_taken)  # steps taken before this forward
            if self.training:  # one training forward per optimiser step
                self.steps_taken += 1
            return out + value if done >= after_steps else out

    monkeypatch.setitem(TEACHERS, "mlp", DivergingMLP)


def _assert_kept_epoch_1(out: Path) -> None:
    assert json.loads((out / "last.json").read_text())["epoch"] == 1
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1] and np.isfinite(history[0]["train_loss"])
    assert np.isfinite(history[0]["val_acc"]) and np.isfinite(history[0]["test_acc"])
    assert not (out / "best.safetensors").exists() and not (out / "result.json").exists()


def _stops_in_epoch_1(tmp_path, capsys, epochs: int, message: str) -> None:
    """The teacher command is refused with ``message`` and no checkpoint; no run
    directory appears (one appears only with its first finished epoch)."""
    out = tmp_path / "out"
    argv = [*TEACHER, "--epochs", str(epochs), "--batch-size", "4096", "--out", out]
    refused(capsys, argv, re.escape(message), "no epoch had finished, so no checkpoint")
    assert not out.exists()


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_loss_in_epoch_1_stops_with_no_checkpoint(tmp_path, capsys, monkeypatch,
                                                             value):
    _poison_loss(monkeypatch, value, from_call=1)
    _stops_in_epoch_1(tmp_path, capsys, 3, f"training loss became non-finite (NaN or inf: "
                                           f"{value}) in epoch 1")


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_loss_in_epoch_2_keeps_epoch_1_and_names_the_epoch(tmp_path, capsys,
                                                                      monkeypatch, value):
    # (--lr 1e-05 also checks that the flag's float reaches the config as a float: YAML
    # reads "1e-05" as a string.)
    _poison_loss(monkeypatch, value, from_call=2)
    out = tmp_path / "out"
    argv = [*TEACHER, "--epochs", "4", "--batch-size", "4096", "--lr", "1e-05", "--out", out]
    refused(capsys, argv, re.escape(f"training loss became non-finite (NaN or inf: {value})"
                                    " in epoch 2"),
            re.escape(f"the checkpoint of epoch 1 is kept in {out}"))
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 1e-05
    _assert_kept_epoch_1(out)
    # The kept checkpoint is whole: the same command resumes from it (and stops again).
    kept = snapshot(out)
    _poison_loss(monkeypatch, value, from_call=1)  # the resumed run's first step is epoch 2
    assert main([str(a) for a in argv]) == 2
    captured = capsys.readouterr()
    assert f"resuming {out} after epoch 1" in captured.out
    assert "in epoch 2" in captured.err
    assert snapshot(out)["last.safetensors"] == kept["last.safetensors"]


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_outputs_after_epoch_1_stop_before_its_checkpoint(tmp_path, capsys,
                                                                     monkeypatch, value):
    # Epoch 1's loss is finite (its step starts from the initial weights); the weights it
    # ends with give non-finite outputs on the validation images, so epoch 1 is neither
    # checkpointed nor selected.
    _diverging_mlp(monkeypatch, value, after_steps=1)
    _stops_in_epoch_1(tmp_path, capsys, 2,
                      "the model's outputs became non-finite (NaN or inf) in epoch 1")


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_outputs_in_epoch_2_keep_the_epoch_1_checkpoint(tmp_path, capsys,
                                                                   monkeypatch, value):
    _diverging_mlp(monkeypatch, value, after_steps=2)
    out = tmp_path / "out"
    argv = [*TEACHER, "--epochs", "4", "--batch-size", "4096", "--out", out]
    message = re.escape("the model's outputs became non-finite (NaN or inf) in epoch 2")
    refused(capsys, argv, message, re.escape(f"the checkpoint of epoch 1 is kept in {out}"))
    _assert_kept_epoch_1(out)
    kept = snapshot(out)
    assert main([str(a) for a in argv]) == 2  # resumes after epoch 1, diverges again
    captured = capsys.readouterr()
    assert f"resuming {out} after epoch 1" in captured.out
    assert re.search(message, captured.err), captured.err
    assert snapshot(out)["last.safetensors"] == kept["last.safetensors"]
