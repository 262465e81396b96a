"""One test per Sample Factory 2.1.1 fix in cage_sf/sf_compat.py; each fails without its fix.

The V-trace summary fix and the train_for_seconds fix are proven by real training runs in test_training.py.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sample_factory.algo.learning.learner import Learner
from sample_factory.algo.runners import runner as runner_module
from sample_factory.algo.utils.env_info import extract_env_info
from sample_factory.algo.utils.model_sharing import ParameterServer
from sample_factory.algo.utils.shared_buffers import alloc_trajectory_tensors
from sample_factory.model.model_utils import get_rnn_size

from cage_sf import sf_compat
from cage_sf.adapter import CC4SampleFactoryEnv
from cage_sf.backends.synthetic import SyntheticBackend
from cage_sf.train import resolve_config

sf_compat.apply()


def test_wandb_init_works_offline_without_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials
    cfg = resolve_config("smoke", ["--backend=synthetic", "--with_wandb=True", f"--train_dir={tmp_path}"])
    import wandb

    runner_module.init_wandb(cfg)  # SF's own version raises: wandb.Settings(start_method=...) is rejected
    try:
        assert wandb.run is not None and wandb.run.settings.mode == "offline"
        assert wandb.run.dir.startswith(str(tmp_path / "smoke"))
    finally:
        wandb.finish()


def test_checkpoint_with_numpy_scalar_loads(tmp_path):
    path = tmp_path / "checkpoint_000000001_100.pth"
    torch.save({"train_step": 1, "env_steps": 100, "best_performance": np.float64(-42.0)}, path)
    loaded = Learner.load_checkpoint([str(path)], "cpu")  # SF's own returns None: weights_only rejects numpy
    assert loaded is not None and loaded["env_steps"] == 100 and loaded["best_performance"] == -42.0


def test_unreadable_checkpoint_fails_loudly(tmp_path):
    path = tmp_path / "checkpoint_000000001_100.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(sf_compat.CheckpointLoadError, match="could not load checkpoint"):
        Learner.load_checkpoint([str(path)], "cpu")


def test_fixes_reach_spawned_processes():
    """SF's children get the registered env and model functions by unpickling the global context."""
    from sample_factory.algo.utils.context import sf_global_context

    import cage_sf.env_registry  # noqa: F401
    import cage_sf.models  # noqa: F401

    child = (
        "import pickle, sys\n"
        "pickle.loads(sys.stdin.buffer.read())\n"
        "from sample_factory.algo.learning.learner import Learner\n"
        "from sample_factory.algo.runners.runner import Runner\n"
        "print(Learner.load_checkpoint.__module__, hasattr(Learner._record_summaries, '__wrapped__'),\n"
        "      hasattr(Runner._update_stats_and_print_report, '__wrapped__'),\n"
        "      hasattr(Learner._prepare_batch, '__wrapped__'), hasattr(Learner._calculate_losses, '__wrapped__'),\n"
        "      hasattr(Learner.init, '__wrapped__'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child],
        input=pickle.dumps(sf_global_context()),
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout.decode()
    # the last line: after SF's log
    assert out.splitlines()[-1].split() == ["cage_sf.sf_compat", "True", "True", "True", "True", "True"]


def test_vtrace_matches_eq1_by_hand():
    """gamma 0.5, rho_hat 1, c_hat 0.5, ratios (2, 0.25, 0.75): rho = (1, 0.25, 0.75), c = (0.5, 0.25, 0.5).
    V = (1, 2, 3), r = (1, 0, 2), V(x_3) = 4; the bootstrap's other entries (99) must be ignored.
    v_s = V_s + sum_t gamma^(t-s) (c_s..c_(t-1)) delta_t, delta_t = rho_t (r_t + gamma V_(t+1) - V_t),
    adv_s = rho_s (r_s + gamma v_(s+1) - V_s); a done at step t zeroes gamma after t."""
    values = torch.tensor([1.0, 2, 3] * 3)
    rewards = torch.tensor([1.0, 0, 2] * 3)
    ratios = torch.tensor([2.0, 0.25, 0.75] * 3)
    bootstrap = torch.tensor([99.0, 99, 4] * 3)
    dones = torch.tensor([0.0, 0, 0, 0, 1, 0, 0, 0, 1])  # no done; done after step 1; done after the last step
    vs, adv = sf_compat.vtrace(values, rewards, dones, ratios, bootstrap, 0.5, 1.0, 0.5, recurrence=3)

    # no done: delta = (1 * (1 + 1 - 1), 0.25 * (0 + 1.5 - 2), 0.75 * (2 + 2 - 3)) = (1, -0.125, 0.75)
    # v_2 = 3 + 0.75 = 3.75; v_1 = 2 - 0.125 + 0.5 * 0.25 * 0.75 = 1.96875
    # v_0 = 1 + 1 + 0.5 * 0.5 * (-0.125) + 0.25 * (0.5 * 0.25) * 0.75 = 1.9921875
    # adv = (1 * (1 + 0.5 * 1.96875 - 1), 0.25 * (0 + 0.5 * 3.75 - 2), 0.75 * (2 + 0.5 * 4 - 3))
    no_done_vs, no_done_adv = [1.9921875, 1.96875, 3.75], [0.984375, -0.03125, 0.75]
    # done after step 1: delta_1 = 0.25 * (0 - 2) = -0.5, and nothing after step 1 reaches steps 0 and 1
    # v_1 = 1.5; v_0 = 1 + 1 + 0.5 * 0.5 * (-0.5) = 1.875; adv_0 = 1 + 0.5 * 1.5 - 1; adv_1 = 0.25 * (0 - 2)
    mid_done_vs, mid_done_adv = [1.875, 1.5, 3.75], [0.75, -0.5, 0.75]
    # done after the last step: V(x_3) is cut, delta_2 = 0.75 * (2 - 3) = -0.75
    # v_1 = 2 - 0.125 + 0.5 * 0.25 * (-0.75); v_0 = 1 + 1 + 0.25 * (-0.125) + 0.25 * 0.125 * (-0.75)
    end_done_vs, end_done_adv = [1.9453125, 1.78125, 2.25], [0.890625, -0.21875, -0.75]

    assert vs.tolist() == pytest.approx(no_done_vs + mid_done_vs + end_done_vs)
    assert adv.tolist() == pytest.approx(no_done_adv + mid_done_adv + end_done_adv)
    assert adv[2] == 0.75  # SF 2.1.1 gives the last step of every trajectory advantage 0 (and target V = 3)


def test_vtrace_learner_bootstraps_from_its_value_of_the_next_state(tmp_path):
    """A real Learner trains on one batch of 6 trajectories of 4 steps in 2 shuffled minibatches. With
    learning_rate 0 and the batch's log-probs from the learner's own network the data is on-policy (ratio 1),
    so each V-trace target is the discounted return bootstrapped from the learner's V(x_T)."""
    import cage_sf.models  # noqa: F401  (registers the CC4 actor-critic)

    gamma, num_traj, rollout = 0.9, 6, 4
    cfg = resolve_config(
        "smoke",
        [
            "--backend=synthetic",
            f"--train_dir={tmp_path}",
            f"--rollout={rollout}",
            "--batch_size=12",
            "--batched_sampling=False",
        ]
        + ["--num_batches_per_epoch=2", "--shuffle_minibatches=True", f"--gamma={gamma}"],
    )
    cfg.learning_rate = 0.0  # a frozen learner, which a training run refuses
    env_info = extract_env_info(CC4SampleFactoryEnv(lambda: SyntheticBackend(seed=0), step_timeout_s=5.0), cfg)
    versions = torch.zeros(1, dtype=torch.int32)
    learner = Learner(cfg, env_info, versions, 0, ParameterServer(0, versions, serial_mode=True))
    learner.init()
    assert all(group["foreach"] for group in learner.optimizer.param_groups)  # sf_compat._adam_foreach
    model = learner.actor_critic

    gen = torch.Generator().manual_seed(0)
    batch = alloc_trajectory_tensors(env_info, num_traj, rollout, get_rnn_size(cfg), torch.device("cpu"), False)
    for key, space in env_info.obs_space.spaces.items():
        batch["obs"][key][:] = torch.rand(batch["obs"][key].shape, generator=gen) * float(space.high.max())
    batch["obs"]["agent_type"][:] = torch.tensor([0.0, 0, 0, 0, 1, 1]).view(-1, 1, 1)
    batch["obs"]["valid_actions"][:] = 1.0
    batch["rnn_states"][:] = 0.0
    batch["actions"][:] = torch.randint(0, 82, batch["actions"].shape, generator=gen)
    batch["rewards"][:] = torch.randn(batch["rewards"].shape, generator=gen)
    batch["dones"][:] = False
    batch["dones"][1, 1] = batch["dones"][2, -1] = True
    batch["policy_id"][:] = 0
    batch["policy_version"][:] = 0
    with torch.no_grad():
        flat_obs = {k: v.flatten(0, 1) for k, v in batch["obs"].items()}
        values = model(flat_obs, batch["rnn_states"].flatten(0, 1), values_only=True)["values"]
        values = values.view(num_traj, rollout + 1)
        step_obs = {k: v[:, :rollout].flatten(0, 1) for k, v in batch["obs"].items()}
        out = model(step_obs, batch["rnn_states"][:, :rollout].flatten(0, 1))
        log_probs = model.action_distribution().log_prob(batch["actions"].flatten(0, 1))
    batch["values"][:] = values
    batch["values"][:, -1] = -42.0  # the learner computes V(x_T) itself
    batch["log_prob_actions"][:] = log_probs.view(num_traj, rollout)
    batch["action_logits"][:] = out["action_logits"].view(num_traj, rollout, -1)

    expected = torch.empty(num_traj, rollout)
    ret = values[:, -1]
    for t in reversed(range(rollout)):
        ret = expected[:, t] = batch["rewards"][:, t] + gamma * ~batch["dones"][:, t] * ret
    expected = expected.flatten()

    events = []

    def get_minibatch(buffer, indices):
        mb = Learner._get_minibatch(buffer, indices)
        events.append(("minibatch", indices, mb))
        return mb

    def value_loss(new_values, old_values, target, *args):
        events.append(("target", target.clone()))
        return Learner._value_loss(learner, new_values, old_values, target, *args)

    learner._get_minibatch, learner._value_loss = get_minibatch, value_loss
    assert learner.train(batch) is not None

    minibatches = [i for i, event in enumerate(events) if event[0] == "minibatch"]
    assert len(minibatches) == 2
    for start, end in zip(minibatches, minibatches[1:] + [len(events)], strict=True):
        _, indices, mb = events[start]
        assert len(indices) == 12 and (indices.reshape(-1, rollout) % rollout == np.arange(rollout)).all()
        last_steps = indices[rollout - 1 :: rollout]
        assert mb["vtrace_bootstrap"][rollout - 1 :: rollout].tolist() == pytest.approx(
            values[last_steps // rollout, -1].tolist(), abs=1e-6
        )
        _, target = events[end - 1]  # the last value loss computed for this minibatch is the one SF trains on
        assert target.tolist() == pytest.approx(expected[indices].tolist(), abs=1e-5)


def test_batched_sampling_reports_episode_stats_from_per_agent_infos():
    """SF's batched sampler keeps only `reward`/`len` from a list of infos; the fix adds `episode_extra_stats` and
    `true_objective` of the agents whose episode ended (None: left out), as the non-batched sampler does."""
    from types import SimpleNamespace

    from sample_factory.algo.sampling.batched_sampling import BatchedVectorEnvRunner
    from sample_factory.algo.utils.misc import EPISODIC

    runner = object.__new__(BatchedVectorEnvRunner)
    runner.cfg = SimpleNamespace(summaries_use_frameskip=False)
    runner.env_info = SimpleNamespace(frameskip=1)
    runner.vec_env = SimpleNamespace(num_agents=3)
    runner.policy_id = 0
    runner.curr_episode_reward = torch.tensor([1.0, 2.0, 3.0])
    runner.curr_episode_len = torch.zeros(3, dtype=torch.int32)
    runner.min_raw_rewards = torch.zeros(3)
    runner.max_raw_rewards = torch.zeros(3)
    infos = [
        {"episode_extra_stats": {"cc4/eval_return": -7.0}, "true_objective": -7.0},
        {"episode_extra_stats": {"cc4/env_fault": 1.0}, "true_objective": None},
        {},
    ]
    reports = runner._process_env_step(torch.zeros(3), torch.tensor([True, True, False]), infos)
    stats = reports[0][EPISODIC]
    assert stats["episode_extra_stats"]["cc4/eval_return"].tolist() == [-7.0]
    assert stats["episode_extra_stats"]["cc4/env_fault"].tolist() == [1.0]
    assert stats["true_objective"].tolist() == [-7.0]  # the faulted episode is left out


def test_sf_learners_float_of_its_loss_does_not_warn():
    """SF's learner calls float() on its loss, which requires grad: torch 2.13 would warn on every run's stderr.
    (In a fresh process, as SF's learner imports us: pytest resets warning filters around each test.)"""
    code = "import cage_sf.models, torch; float((torch.ones(1, requires_grad=True) * 2).sum())"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "requires_grad" not in result.stderr, result.stderr
