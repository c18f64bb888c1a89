"""What a grid is made of: ``Run`` (an id, the table row it belongs to, its config) and
the options every grid takes (``GridOptions``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import DistillConfig


@dataclass
class Run:
    run_id: str
    setting: str  # the table row this run belongs to
    cfg: DistillConfig


@dataclass
class GridOptions:
    quick: bool = False
    seeds: int | None = None  # default: 3 (full) / 2 (quick)
    epochs: int | None = None  # student epochs; default: the paper's 10
    teacher_epochs: dict[str, int] | None = None  # per teacher; default: the paper's 10
    teachers: tuple[str, ...] | None = None  # subset of none/lenet/alexnet/ensemble
    only: str | None = None  # keep the runs whose run_id matches this glob pattern
    shots: bool = False  # the paper's finite shots instead of exact probabilities
    # paper-v1 readout: logprob (distill's default too) or paper (the notebooks' sigmoid
    # head: results/paper-v1 names it with --head paper)
    head: str = "logprob"
    angles: str = "pi"  # paper-v1 angle range: pi (the paper's) or half-pi
    datasets: tuple[str, ...] | None = None
    device: str = "cpu"
    data_dir: str | None = None
    # runs that can share a step train together (lockstep/): faster, not bit-identical
    lockstep: bool = False
    experiments: tuple[str, ...] | None = None  # kd-study: a subset of E1, E2, E2S2, E3, E4
