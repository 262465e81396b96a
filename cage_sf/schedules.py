"""A learning rate that falls linearly over the run's budget, so the policy stops wandering as the run ends.

Sample Factory 2.1.1 has no schedule a time budget can drive: its `linear_decay` (which its own parser does not
offer) counts minibatches of this process against `--train_for_env_steps` alone, so with `--train_for_seconds`
the rate barely falls, and a resumed run starts the decay again from the top. Here the rate at each minibatch is

    learning_rate x (1 - (1 - lr_decay_to) x progress),

where `progress` in [0, 1] is how much of the budget is spent: the larger of the learner's agent steps over
`--train_for_env_steps` (saved in checkpoints, so a resumed run carries on) and this process's seconds over
`--train_for_seconds` (which, like the run's stop, counts from this process's start). `--lr_decay_to=1` (Sample
Factory's default schedule, `constant`) leaves the rate alone. SF logs the rate as `train/lr`.
"""

from __future__ import annotations

import functools
import time

from sample_factory.algo.learning.learner import Learner, LearningRateScheduler


def budget_progress(env_steps: int, seconds: float, train_for_env_steps: int, train_for_seconds: float) -> float:
    """The share of the run's budget spent: whichever of its two limits is nearer, capped at 1."""
    return min(1.0, max(env_steps / train_for_env_steps, seconds / train_for_seconds))


def annealed_lr(learning_rate: float, decay_to: float, progress: float) -> float:
    return learning_rate * (1.0 - (1.0 - decay_to) * progress)


class BudgetDecay(LearningRateScheduler):
    """Sample Factory's scheduler interface, updated after every minibatch from the learner's own step count."""

    def __init__(self, learner: Learner):
        self.learner = learner
        self.start = time.monotonic()

    def invoke_after_each_minibatch(self) -> bool:
        return True

    def update(self, current_lr: float, recent_kls: list) -> float:
        cfg = self.learner.cfg
        seconds = time.monotonic() - self.start
        progress = budget_progress(self.learner.env_steps, seconds, cfg.train_for_env_steps, cfg.train_for_seconds)
        return annealed_lr(cfg.learning_rate, cfg.lr_decay_to, progress)


def install() -> None:
    Learner.init = _budget_decay(Learner.init)


def _budget_decay(init):
    """After SF's init (which builds its own scheduler): replace it when the run asks for a decay."""

    @functools.wraps(init)
    def wrapper(self):
        result = init(self)
        if self.cfg.lr_decay_to < 1.0:
            self.lr_scheduler = BudgetDecay(self)
        return result

    return wrapper
