"""cage_sf/divergence.py: a non-finite update never reaches the weights, and non-finite weights are never saved.

The run that diverges end to end is in tests/test_failures.py; export's and evaluate's refusal in tests/test_export.py.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sample_factory.algo.learning.learner import Learner
from sample_factory.algo.runners.runner import Runner
from sample_factory.algo.utils.misc import EPISODIC

from cage_sf import sf_compat
from cage_sf.divergence import DivergenceGuard
from cage_sf.errors import RunFailure

sf_compat.apply()


def learner_with_guard(limit: int, max_grad_norm: float = 4.0):
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    cfg = SimpleNamespace(
        max_nonfinite_updates=limit, learning_rate=1000.0, reward_scale=0.02, max_grad_norm=max_grad_norm
    )
    learner = SimpleNamespace(cfg=cfg, train_step=7, actor_critic=model, optimizer=optimizer)
    learner.guard = DivergenceGuard(learner)
    optimizer.register_step_pre_hook(learner.guard.before_step)
    return learner


def update(learner, fault: str | None = None) -> None:
    """One SGD step as SF's learner makes it: losses checked, backward, optimizer step. `fault`: `loss` makes the
    value loss infinite (its gradients too), `gradients` gives a finite loss whose gradients are NaN."""
    model = learner.actor_critic
    value_loss = model(torch.ones(4, 3)).pow(2).mean()
    if fault == "loss":
        value_loss = value_loss * math.inf
    if fault == "gradients":
        value_loss = torch.sqrt(model.weight.sum() * 0.0)  # 0, and d sqrt(x)/dx at 0 times 0: NaN
    learner.guard.check_losses({"policy_loss": torch.tensor(0.5), "exploration_loss": 0.0, "value_loss": value_loss})
    learner.optimizer.zero_grad()
    value_loss.backward()
    learner.optimizer.step()
    learner.train_step += 1


def weights(learner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.actor_critic.parameters()]


def unchanged(before: list[torch.Tensor], learner) -> bool:
    return all(torch.equal(a, b) for a, b in zip(before, learner.actor_critic.parameters(), strict=True))


@pytest.mark.parametrize(
    ("fault", "max_grad_norm", "line"),
    [
        (
            "loss",
            4.0,
            "training diverged at train step 8: non-finite value_loss and gradients (not applied); try a lower "
            "--learning_rate (now 1000), --reward_scale (now 0.02) or --max_grad_norm (now 4)",
        ),
        (
            "gradients",
            0.0,
            "training diverged at train step 8: non-finite gradients (not applied); try a lower --learning_rate "
            "(now 1000), --reward_scale (now 0.02), or --max_grad_norm above 0 (clipping is off)",
        ),
    ],
)
def test_the_first_nonfinite_update_ends_the_run_with_one_line_and_is_not_applied(fault, max_grad_norm, line):
    learner = learner_with_guard(limit=1, max_grad_norm=max_grad_norm)
    update(learner)
    before = weights(learner)
    with pytest.raises(RunFailure) as failure:
        update(learner, fault)
    assert str(failure.value) == line
    assert unchanged(before, learner)


def test_fewer_nonfinite_updates_in_a_row_than_the_limit_are_dropped():
    learner = learner_with_guard(limit=3)
    before = weights(learner)
    update(learner, "loss")
    update(learner, "gradients")
    assert unchanged(before, learner)
    update(learner)  # a finite update is applied and starts the count again
    assert not unchanged(before, learner)
    update(learner, "loss")
    update(learner, "loss")
    with pytest.raises(RunFailure, match=r"^training diverged at train step 12: non-finite value_loss and gradients "
                                         r"\(3 updates in a row, not applied\); "):  # fmt: skip
        update(learner, "loss")


def test_no_checkpoint_is_written_from_nonfinite_weights(tmp_path):
    model = torch.nn.Linear(3, 1)
    model.bias.data[0] = math.nan
    learner = SimpleNamespace(is_initialized=True, actor_critic=model)
    assert Learner._save_impl(learner, "checkpoint", "", 2) is False  # regular and best checkpoints
    assert Learner.save_milestone(learner) is False


def test_the_best_checkpoint_metric_leaves_out_episodes_whose_objective_is_not_finite():
    cfg = SimpleNamespace(save_best_metric="true_objective", stats_avg=10, num_policies=1)
    runner = SimpleNamespace(cfg=cfg, policy_avg_stats={})
    episodes = {"reward": np.array([-1.0, -2.0, -3.0]), "true_objective": np.array([-5.0, np.nan, np.inf])}
    Runner._episodic_stats_handler(runner, {EPISODIC: episodes}, 0)
    Runner._episodic_stats_handler(runner, {EPISODIC: {"reward": -4.0, "true_objective": -np.inf}}, 0)
    assert list(runner.policy_avg_stats["true_objective"][0]) == [-5.0]
    assert list(runner.policy_avg_stats["reward"][0]) == [-1.0, -2.0, -3.0, -4.0]
