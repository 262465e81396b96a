"""The budget-driven decays of the learning rate and the entropy bonus (cage_sf/schedules.py), on a real Sample
Factory Learner."""

import pytest
from test_losses import make_batch, make_learner, train_and_capture

from cage_sf.errors import UsageError
from cage_sf.schedules import annealed, budget_progress
from cage_sf.train import resolve_config


def test_progress_is_the_nearer_of_the_two_limits_and_stops_at_the_end():
    assert budget_progress(250, 10.0, 1000, 100.0) == pytest.approx(0.25)
    assert budget_progress(250, 60.0, 1000, 100.0) == pytest.approx(0.6)
    assert budget_progress(5000, 10.0, 1000, 100.0) == 1.0
    assert [annealed(0.01, 0.1, p) for p in (0.0, 0.5, 1.0)] == pytest.approx([0.01, 0.0055, 0.001])


def test_the_learner_decays_its_rate_with_the_env_steps_it_has_trained_on(tmp_path):
    learner = make_learner(tmp_path, "--learning_rate=0.01", "--lr_decay_to=0.1", "--train_for_env_steps=1000")
    learner.env_steps = 500  # as a checkpoint of a resumed run restores it
    learner.train(make_batch(learner))
    assert learner.curr_lr == pytest.approx(0.0055)  # half the budget spent (SF counts the batch after it)
    learner.env_steps = 10_000
    learner.train(make_batch(learner, seed=1))
    assert learner.curr_lr == pytest.approx(0.001)
    learner.train(make_batch(learner, seed=2))
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)  # the step it took, at the decayed rate


def test_the_learner_decays_its_rate_with_the_seconds_it_has_run(tmp_path):
    learner = make_learner(tmp_path, "--learning_rate=0.01", "--lr_decay_to=0.0", "--train_for_seconds=100")
    learner.budget.start -= 75.0  # 75 s of the 100 s budget spent
    learner.train(make_batch(learner))
    assert learner.curr_lr == pytest.approx(0.0025, rel=0.01)


def test_without_a_decay_the_rate_stays_constant(tmp_path):
    learner = make_learner(tmp_path, "--learning_rate=0.01", "--train_for_env_steps=1000")
    learner.env_steps = 900
    learner.train(make_batch(learner))
    assert learner.curr_lr == 0.01


def test_the_entropy_bonus_falls_with_the_budget_and_the_rate_stays(tmp_path):
    learner = make_learner(
        tmp_path, "--exploration_loss_coeff=0.01", "--entropy_decay_to=0.2", "--train_for_env_steps=1000"
    )
    batch = make_batch(learner)
    learner.env_steps = 500
    half = train_and_capture(learner, batch)
    assert float(half["summaries"]["entropy_coeff"]) == pytest.approx(0.006)
    entropy = float(half["summaries"]["decision_entropy"])
    assert float(half["exploration"]) == pytest.approx(-0.006 * entropy, rel=1e-4)  # the bonus, at its decayed weight
    learner.env_steps = 10_000
    spent = train_and_capture(learner, batch)
    assert float(spent["summaries"]["entropy_coeff"]) == pytest.approx(0.002)
    assert learner.curr_lr == learner.cfg.learning_rate


def test_without_an_entropy_decay_the_bonus_keeps_its_weight(tmp_path):
    learner = make_learner(tmp_path, "--exploration_loss_coeff=0.01", "--train_for_env_steps=1000")
    learner.env_steps = 900
    summaries = train_and_capture(learner, make_batch(learner))["summaries"]
    assert float(summaries["entropy_coeff"]) == 0.01


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--lr_decay_to=1.5"], "lr_decay_to"),
        (["--entropy_decay_to=-0.1"], "entropy_decay_to"),
        (["--lr_decay_to=0.1", "--lr_schedule=kl_adaptive_epoch"], "needs lr_schedule=constant"),
    ],
)
def test_a_decay_outside_its_domain_or_beside_another_schedule_is_refused(argv, match):
    with pytest.raises(UsageError, match=match):
        resolve_config("smoke", argv)
