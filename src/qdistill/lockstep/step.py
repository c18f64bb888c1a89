"""The per-run parts of one lockstep step: Adam over stacked parameters with each run's
own settings and state (``GroupAdam``), and the loss with each run's own kind,
temperature and alpha (``GroupLoss``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import HintonKD, PaperKD
from ..losses.base import UNLABELLED
from ..training import fit as train
from ..training.evaluation import take_columns
from .proxies import Unsupported
from .twin import Twin


# --------------------------------------------------------------------------- Adam
class GroupAdam:
    """``torch.optim.Adam(fused=True)`` for stacked parameters: the same kernel
    (``torch._fused_adam_``) and state, one call per distinct set of Adam settings
    (per-run views when the runs' lr or weight decay differ)."""

    def __init__(self, twin: Twin, opts: Sequence[torch.optim.Optimizer],
                 models: Sequence[nn.Module]):
        self.twin = twin
        groups = []
        for opt in opts:
            if len(opt.param_groups) != 1:
                raise Unsupported("more than one optimiser parameter group")
            g = opt.param_groups[0]
            if not g.get("fused") or g.get("amsgrad") or g.get("differentiable"):
                raise Unsupported("Adam without the fused kernel (or with amsgrad)")
            groups.append(g)
        self.names = [n for n, t in twin.params.items() if t.requires_grad]
        self.hparams = [(g["lr"], tuple(g["betas"]), g["eps"], g["weight_decay"],
                         bool(g.get("maximize", False)),
                         bool(g.get("decoupled_weight_decay", False))) for g in groups]
        split: dict[tuple, list[int]] = defaultdict(list)
        for r, hp in enumerate(self.hparams):
            split[hp].append(r)
        self.split = list(split.items())
        self.exp_avg: dict[str, torch.Tensor] = {}
        self.exp_avg_sq: dict[str, torch.Tensor] = {}
        self.step_t: dict[str, torch.Tensor] = {}
        self.has_state: dict[str, bool] = {}
        for n in self.names:
            stacked = twin.params[n]
            states = []
            for opt, model in zip(opts, models, strict=True):
                p = model.get_parameter(n)
                states.append(opt.state.get(p, {}))
            present = [bool(s) for s in states]
            if any(present) and not all(present):
                raise Unsupported(f"Adam state of {n} in some runs only")
            self.has_state[n] = all(present)
            if self.has_state[n]:
                steps = {float(s["step"]) for s in states}
                if len(steps) != 1:
                    raise Unsupported("runs at different Adam steps")
                self.step_t[n] = states[0]["step"].detach().clone().to(stacked.device)
                self.exp_avg[n] = torch.stack([twin.from_run_layout(n, s["exp_avg"])
                                               for s in states]).contiguous()
                self.exp_avg_sq[n] = torch.stack([twin.from_run_layout(n, s["exp_avg_sq"])
                                                  for s in states]).contiguous()
            else:
                self.step_t[n] = torch.zeros((), dtype=torch.float32, device=stacked.device)
                self.exp_avg[n] = torch.zeros_like(stacked)
                self.exp_avg_sq[n] = torch.zeros_like(stacked)

    def zero_grad(self) -> None:
        for t in self.twin.params.values():
            t.grad = None

    @torch.no_grad()
    def step(self) -> None:
        params = self.twin.params
        names = [n for n in self.names if params[n].grad is not None]
        if not names:
            return
        torch._foreach_add_([self.step_t[n] for n in names], 1)
        whole = len(self.split) == 1
        for (lr, (beta1, beta2), eps, wd, maximize, decoupled), runs in self.split:
            if whole:
                ps = [params[n] for n in names]
                gs = [params[n].grad for n in names]
                ea = [self.exp_avg[n] for n in names]
                es = [self.exp_avg_sq[n] for n in names]
                st = [self.step_t[n] for n in names]
            else:
                ps = [params[n][r] for r in runs for n in names]
                gs = [params[n].grad[r] for r in runs for n in names]
                ea = [self.exp_avg[n][r] for r in runs for n in names]
                es = [self.exp_avg_sq[n][r] for r in runs for n in names]
                st = [self.step_t[n] for _ in runs for n in names]
            fn = torch._fused_adamw_ if decoupled else torch._fused_adam_
            fn(ps, gs, ea, es, [], st, amsgrad=False, lr=lr, beta1=beta1, beta2=beta2,
               weight_decay=wd, eps=eps, maximize=maximize, grad_scale=None, found_inf=None)
        for n in names:
            self.has_state[n] = True

    @torch.no_grad()
    def sync(self, r: int, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        """Run r's weights into its own student and its Adam state into its own
        optimiser (what ``write_epoch`` saves)."""
        for n, t in self.twin.run_state(r).items():
            model.get_parameter(n).copy_(t)
        for n in self.names:
            p = model.get_parameter(n)
            if not self.has_state[n]:
                continue
            opt.state[p] = {
                "step": self.step_t[n].clone(),
                "exp_avg": self.twin.to_run_layout(n, self.exp_avg[n][r]).contiguous().clone(),
                "exp_avg_sq": self.twin.to_run_layout(n, self.exp_avg_sq[n][r])
                .contiguous().clone(),
            }


# --------------------------------------------------------------------------- loss
class GroupLoss:
    """Every run's training loss from the folded outputs, ``(R,)``.

    Plain cross-entropy (``--teacher none``) and the Hinton-family KD losses
    (``hinton``, ``paper``) are computed for all runs at once, with per-run T, alpha
    and CE weight; a no-teacher run in a KD group is the KD formula with weight 1 on CE
    and 0 on the KL term (to zero soft targets), which is its cross-entropy exactly.
    Any other loss is called run by run.
    """

    def __init__(self, fns: Sequence[Any], class_outputs: list[int], device: torch.device):
        self.fns = list(fns)
        self.cols = list(class_outputs)
        kd = [f for f in self.fns if f is not train.cross_entropy]
        R = len(self.fns)
        if not kd:
            self.mode = "ce"
        elif all(type(f) in (HintonKD, PaperKD) for f in kd) and len({type(f) for f in kd}) == 1 \
                and all(f.class_outputs in (None, self.cols) for f in kd):
            self.mode = "kd"
            hard, coef, temp = [], [], []
            for f in self.fns:
                if f is train.cross_entropy:
                    hard.append(1.0)
                    coef.append(0.0)
                    temp.append(1.0)
                else:  # HintonKD.combine: hard * ce + alpha * t * t * kl
                    hard.append(1.0 if f.hard_weight_is_one else 1.0 - f.alpha)
                    coef.append(f.alpha * f.temperature * f.temperature)
                    temp.append(f.temperature)
            self.hard = torch.tensor(hard, dtype=torch.float32, device=device)
            self.coef = torch.tensor(coef, dtype=torch.float32, device=device)
            self.temp = torch.tensor(temp, dtype=torch.float32, device=device).view(R, 1, 1)
        else:
            self.mode = "loop"

    def __call__(self, out: torch.Tensor, y: torch.Tensor, soft: torch.Tensor | None
                 ) -> torch.Tensor:
        R, b = y.shape
        if self.mode == "loop":
            rows = out.view(R, b, -1)
            return torch.stack([
                fn(rows[r], y[r], soft[r] if soft is not None and fn is not
                   train.cross_entropy else None) for r, fn in enumerate(self.fns)])
        # losses.base.labelled_ce: hidden labels (-1, a transfer set) add nothing, the
        # sum over the batch / its size (= F.cross_entropy's mean without hidden labels)
        ce = F.cross_entropy(out, y.reshape(-1), ignore_index=UNLABELLED,
                             reduction="none").view(R, b).sum(1) / b
        if self.mode == "ce":
            return ce
        s = take_columns(out, self.cols).reshape(R, b, -1)
        if soft is None or soft.shape != s.shape:
            raise Unsupported("soft targets do not match the student's class outputs")
        kl = F.kl_div(F.log_softmax(s / self.temp, dim=-1),
                      F.log_softmax(soft / self.temp, dim=-1),
                      reduction="none", log_target=True).reshape(R, -1).sum(1) / b
        return self.hard * ce + self.coef * kl
