"""A run whose learning diverges stops at its first non-finite update, and no non-finite weights are ever saved.

Sample Factory 2.1.1 only logs `High loss value` and goes on: the optimizer applies NaN gradients, the weights turn
NaN, and the run trains on at full speed until its budget ends, saving regular and "best" checkpoints of them.
`install()` (every process, through `sf_compat.apply()`) adds to Sample Factory's learner and runner:

- a check of the loss terms of every minibatch and of the gradients before every optimizer step: a non-finite
  update is dropped (the weights stay as they were), and `--max_nonfinite_updates` of them in a row (1 by
  default) raise `RunFailure`, which `run_guard` reports as the run's one line;
- no checkpoint (regular, best or milestone) of non-finite weights is written;
- episodes whose objective is not finite are left out of the best-checkpoint metric (a NaN makes every window's
  mean NaN and no best is ever saved again; an inf stays the best forever). Episodes ended by an env fault are
  already left out: the adapter reports their objective as None.

`check_finite` is the same refusal for `cage-sf export` and `cage-sf evaluate`, as one line.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

import numpy as np
import torch

from cage_sf.errors import RunFailure, UsageError

log = logging.getLogger(__name__)

DIVERGED = "training diverged"  # how the run's line starts (bench/sweep.py looks for it)
LOSS_TERMS = ("policy_loss", "exploration_loss", "kl_loss", "value_loss")  # as SF's train/ summaries name them


def install() -> None:
    """After `sf_compat`'s own `_calculate_losses` fix, so the losses checked are the ones trained on."""
    from sample_factory.algo.learning.learner import Learner
    from sample_factory.algo.runners.runner import Runner

    Learner.init = _guarded_init(Learner.init)
    Learner._calculate_losses = _checked_losses(Learner._calculate_losses)
    Learner._save_impl = _finite_weights_only(Learner._save_impl)
    Learner.save_milestone = _finite_weights_only(Learner.save_milestone)
    Runner._episodic_stats_handler = staticmethod(_finite_objectives_only(Runner._episodic_stats_handler))


def nonfinite_tensors(tensors: Mapping[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or an infinity."""
    return [name for name, t in tensors.items() if t.is_floating_point() and not _all_finite([t])]


def check_finite(tensors: Mapping[str, torch.Tensor], source: object) -> None:
    """Refuse weights of a diverged run with one line naming their file (`source`)."""
    if bad := nonfinite_tensors(tensors):
        raise UsageError(
            f"{source} holds non-finite weights ({len(bad)} of {len(tensors)} tensors, e.g. {bad[0]}): its training "
            "diverged; export an earlier checkpoint (cage-sf export --checkpoint=PATH)"
        )


class DivergenceGuard:
    """One learner's non-finite updates in a row: each is dropped, and the limit's one ends the run."""

    def __init__(self, learner) -> None:
        self.learner = learner
        self.limit: int = learner.cfg.max_nonfinite_updates
        self.in_a_row = 0
        self.nonfinite_terms: list[str] = []

    def check_losses(self, terms: Mapping[str, torch.Tensor | float]) -> None:
        """Remember which loss terms of this minibatch are not finite."""
        values = {name: torch.as_tensor(value).detach() for name, value in terms.items()}
        finite = _all_finite(list(values.values()))
        self.nonfinite_terms = [] if finite else [name for name, v in values.items() if not _all_finite([v])]

    def before_step(self, optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        """An optimizer step pre-hook: a finite update goes ahead; a non-finite one is dropped or ends the run."""
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        gradients_finite = _all_finite([p.grad for p in params])
        if gradients_finite and not self.nonfinite_terms:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        what = self.nonfinite_terms + ([] if gradients_finite else ["gradients"])
        if self.in_a_row >= self.limit:
            raise RunFailure(self.failure_line(what))
        log.warning(
            "Non-finite %s at train step %d: update dropped (%d in a row of --max_nonfinite_updates=%d)",
            _and(what), self.learner.train_step, self.in_a_row, self.limit,
        )  # fmt: skip
        for p in params:
            p.grad = None  # the optimizer skips parameters without a gradient: the weights stay as they were

    def failure_line(self, what: list[str]) -> str:
        cfg = self.learner.cfg
        row = f"{self.in_a_row} updates in a row, " if self.limit > 1 else ""
        settings = f"--learning_rate (now {cfg.learning_rate:g}), --reward_scale (now {cfg.reward_scale:g})"
        if cfg.max_grad_norm > 0:
            hint = f"{settings} or --max_grad_norm (now {cfg.max_grad_norm:g})"
        else:
            hint = f"{settings}, or --max_grad_norm above 0 (clipping is off)"
        return (
            f"{DIVERGED} at train step {self.learner.train_step}: non-finite {_and(what)} ({row}not applied); "
            f"try a lower {hint}"
        )


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """One sum per tensor and one sync: a NaN or an infinity makes the total non-finite. Only then (a total of
    finite values may overflow) is every element checked, which costs 20 times more on the CC4 model's gradients."""
    total = sum((t.detach().float().sum() for t in tensors), torch.zeros(()))
    return bool(torch.isfinite(total)) or all(bool(torch.isfinite(t).all()) for t in tensors)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _guarded_init(init):
    @functools.wraps(init)
    def wrapper(self):
        result = init(self)
        self.divergence_guard = DivergenceGuard(self)
        self.optimizer.register_step_pre_hook(self.divergence_guard.before_step)
        return result

    return wrapper


def _checked_losses(calculate_losses):
    """SF's `_calculate_losses` returns (distribution, policy, exploration, kl_old, kl, value losses, summaries)."""

    @functools.wraps(calculate_losses)
    def wrapper(self, mb, num_invalids: int):
        result = calculate_losses(self, mb, num_invalids)
        _, policy_loss, exploration_loss, _, kl_loss, value_loss, _ = result
        terms = (policy_loss, exploration_loss, kl_loss, value_loss)
        self.divergence_guard.check_losses(dict(zip(LOSS_TERMS, terms, strict=True)))
        return result

    return wrapper


def _finite_weights_only(save):
    """SF writes whatever the model holds; a checkpoint of non-finite weights is not written (returns False)."""

    @functools.wraps(save)
    def wrapper(self, *args, **kwargs):
        if self.is_initialized and (bad := nonfinite_tensors(self.actor_critic.state_dict())):
            log.error("Not saving a checkpoint: %d tensors of the model are not finite (%s, ...)", len(bad), bad[0])
            return False
        return save(self, *args, **kwargs)

    return wrapper


def _finite_objectives_only(handler):
    """The runner's handler of finished episodes' statistics, without the non-finite values of the metric that
    picks the best checkpoint (`--save_best_metric`)."""

    @functools.wraps(handler)
    def wrapper(runner, msg: dict, policy_id: int) -> None:
        _drop_nonfinite(msg, runner.cfg.save_best_metric)
        handler(runner, msg, policy_id)

    return wrapper


def _drop_nonfinite(stats: dict, metric: str) -> None:
    """In `stats` and the dicts nested in it: the metric's non-finite values removed, its key when none is left."""
    for key, value in list(stats.items()):
        if isinstance(value, dict):
            _drop_nonfinite(value, metric)
        elif key == metric:
            values = np.asarray(value, dtype=float)
            finite = np.isfinite(values)
            if not finite.any():
                del stats[key]
            elif not finite.all():
                stats[key] = values[finite]
