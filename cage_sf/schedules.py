"""A learning rate and an entropy bonus that fall linearly over the run's budget, so the policy stops wandering
as the run ends.

Sample Factory 2.1.1 has no schedule a time budget can drive: its `linear_decay` (which its own parser does not
offer) counts minibatches of this process against `--train_for_env_steps` alone, so with `--train_for_seconds`
the rate barely falls, and a resumed run starts the decay again from the top; its entropy bonus has no schedule
at all. Here, at each minibatch,

    learning rate = learning_rate x (1 - (1 - lr_decay_to) x progress)
    entropy bonus = exploration_loss_coeff x (1 - (1 - entropy_decay_to) x progress)

where `progress` in [0, 1] is how much of the budget is spent: the larger of the learner's agent steps over
`--train_for_env_steps` (saved in checkpoints, so a resumed run carries on) and this process's seconds over
`--train_for_seconds` (which, like the run's stop, counts from this process's start). A `*_decay_to` of 1 leaves
its value alone. SF logs the rate as `train/lr`; the bonus's weight is logged as `train/entropy_coeff`.
"""

from __future__ import annotations

import functools
import time

from sample_factory.algo.learning.learner import Learner, LearningRateScheduler


def budget_progress(env_steps: int, seconds: float, train_for_env_steps: int, train_for_seconds: float) -> float:
    """The share of the run's budget spent: whichever of its two limits is nearer, capped at 1."""
    return min(1.0, max(env_steps / train_for_env_steps, seconds / train_for_seconds))


def annealed(value: float, decay_to: float, progress: float) -> float:
    return value * (1.0 - (1.0 - decay_to) * progress)


class Budget:
    """The learner's progress through the run's budget, from its own step count and this process's clock."""

    def __init__(self, learner: Learner):
        self.learner = learner
        self.start = time.monotonic()

    def progress(self) -> float:
        cfg = self.learner.cfg
        seconds = time.monotonic() - self.start
        return budget_progress(self.learner.env_steps, seconds, cfg.train_for_env_steps, cfg.train_for_seconds)


class BudgetDecay(LearningRateScheduler):
    """Sample Factory's scheduler interface, updated after every minibatch."""

    def __init__(self, budget: Budget):
        self.budget = budget

    def invoke_after_each_minibatch(self) -> bool:
        return True

    def update(self, current_lr: float, recent_kls: list) -> float:
        cfg = self.budget.learner.cfg
        return annealed(cfg.learning_rate, cfg.lr_decay_to, self.budget.progress())


def entropy_scale(learner: Learner) -> float:
    """The share of `--exploration_loss_coeff` the entropy bonus weighs at this point of the run."""
    decay_to = learner.cfg.entropy_decay_to
    return 1.0 if decay_to == 1.0 else annealed(1.0, decay_to, learner.budget.progress())


def install() -> None:
    Learner.init = _budget_schedules(Learner.init)


def _budget_schedules(init):
    """After SF's init (which builds its own scheduler): start the budget's clock, and replace SF's scheduler when
    the run asks for a decay."""

    @functools.wraps(init)
    def wrapper(self):
        result = init(self)
        self.budget = Budget(self)
        if self.cfg.lr_decay_to < 1.0:
            self.lr_scheduler = BudgetDecay(self.budget)
        return result

    return wrapper
