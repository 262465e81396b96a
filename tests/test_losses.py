"""The learner's losses (cage_sf/losses.py) on a real Sample Factory Learner: policy-side terms see decisions
only, SF-invalid samples cut the V-trace, the teacher anchor decays as configured, critic warm-up moves no actor."""

import numpy as np
import pytest
import torch
from sample_factory.algo.learning.learner import Learner
from sample_factory.algo.utils.env_info import extract_env_info
from sample_factory.algo.utils.model_sharing import ParameterServer
from sample_factory.algo.utils.shared_buffers import alloc_trajectory_tensors
from sample_factory.model.model_utils import get_rnn_size

from cage_sf import cc4, sf_compat
from cage_sf.adapter import NUM_ACTIONS, CC4SampleFactoryEnv, action_space, observation_space
from cage_sf.backends.synthetic import SyntheticBackend
from cage_sf.losses import TeacherAnchor, anchor_path
from cage_sf.train import resolve_config

sf_compat.apply()

GAMMA, TRAJECTORIES, ROLLOUT = 0.9, 6, 4
TYPES = [0, 0, 0, 0, 1, 1]  # agent type of each trajectory
BUSY = 5  # the last trajectory's agent is busy throughout: only Sleep is valid


def make_learner(tmp_path, *overrides: str) -> Learner:
    import cage_sf.models  # noqa: F401  (registers the CC4 actor-critic)

    cfg = resolve_config(
        "smoke",
        [
            "--backend=synthetic",
            f"--train_dir={tmp_path}",
            f"--rollout={ROLLOUT}",
            f"--batch_size={TRAJECTORIES * ROLLOUT}",
            "--batched_sampling=False",
            f"--gamma={GAMMA}",
            *overrides,
        ],
    )
    env = CC4SampleFactoryEnv(lambda: SyntheticBackend(seed=0), step_timeout_s=5.0, messages=cfg.messages)
    env_info = extract_env_info(env, cfg)
    versions = torch.zeros(1, dtype=torch.int32)
    learner = Learner(cfg, env_info, versions, 0, ParameterServer(0, versions, serial_mode=True))
    learner.init()
    return learner


def make_batch(learner: Learner, seed: int = 0, off_policy: float = 0.0):
    """Random trajectories, on-policy (log-probs and logits from the learner's own network) unless `off_policy`:
    the standard deviation of noise added to the behaviour's log-probs (importance ratios away from 1)."""
    model = learner.actor_critic
    gen = torch.Generator().manual_seed(seed)
    env_info = learner.env_info
    batch = alloc_trajectory_tensors(
        env_info, TRAJECTORIES, ROLLOUT, get_rnn_size(learner.cfg), torch.device("cpu"), False
    )
    for key, space in env_info.obs_space.spaces.items():
        batch["obs"][key][:] = torch.rand(batch["obs"][key].shape, generator=gen) * float(space.high.max())
    batch["obs"]["agent_type"][:] = torch.tensor(TYPES, dtype=torch.float).view(-1, 1, 1)
    valid = batch["obs"]["valid_actions"]
    valid[:] = 0.0
    for trajectory, kind in enumerate(TYPES):
        valid[trajectory, :, : cc4.NUM_ACTIONS[kind]] = 1.0
        valid[trajectory, 1, :] = 0.0  # every agent is busy at step 1 as well
        valid[trajectory, 1, cc4.sleep_action(kind)] = 1.0
    valid[BUSY] = 0.0
    valid[BUSY, :, cc4.sleep_action(TYPES[BUSY])] = 1.0
    batch["rnn_states"][:] = 0.0
    batch["rewards"][:] = torch.randn(batch["rewards"].shape, generator=gen)
    batch["dones"][:] = False
    batch["policy_id"][:] = 0
    batch["policy_version"][:] = 0
    with torch.no_grad():
        step_obs = {k: v[:, :ROLLOUT].flatten(0, 1) for k, v in batch["obs"].items()}
        out = model(step_obs, batch["rnn_states"][:, :ROLLOUT].flatten(0, 1))
        actions = model.action_distribution().sample()
        log_probs = model.action_distribution().log_prob(actions)
    batch["actions"][:] = actions.view(batch["actions"].shape)
    noise = off_policy * torch.randn(log_probs.shape, generator=gen)
    batch["log_prob_actions"][:] = (log_probs + noise).view(TRAJECTORIES, ROLLOUT)
    logits = out["action_logits"] + off_policy * torch.randn(out["action_logits"].shape, generator=gen)
    batch["action_logits"][:] = logits.view(TRAJECTORIES, ROLLOUT, -1)
    return batch


def train_and_capture(learner: Learner, batch) -> dict:
    """One learner update on `batch`; the losses and summaries `_calculate_losses` gave it."""
    captured = {}
    calculate = learner._calculate_losses

    def capture(mb, num_invalids):
        result = calculate(mb, num_invalids)
        names = ("distribution", "policy", "exploration", "kl_old", "kl", "value", "summaries")
        captured.update(zip(names, result, strict=True))
        return result

    learner._calculate_losses = capture
    try:
        learner.train({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
    finally:
        del learner._calculate_losses
    return captured


def test_busy_agents_change_neither_advantage_statistics_nor_policy_losses(tmp_path):
    """A trajectory on which the agent only ever had Sleep: its rewards move its own value targets (the value
    loss) but not the advantage statistics, policy loss, entropy bonus or KL, which average over decisions."""
    learner = make_learner(tmp_path, "--learning_rate=1e-9", "--exploration_loss_coeff=0.01", "--kl_loss_coeff=0.1")
    batch = make_batch(learner, off_policy=0.5)
    first = train_and_capture(learner, batch)
    batch["rewards"][BUSY] += 10.0
    second = train_and_capture(learner, batch)

    assert float(second["value"]) != pytest.approx(float(first["value"]))  # the change did reach the losses
    same = dict(rel=1e-5, abs=1e-5)  # float32 sums in another order; a busy row's +10 would move these by ~1
    for name in ("policy", "exploration", "kl"):
        assert float(first[name]) != 0.0 and float(second[name]) == pytest.approx(float(first[name]), **same), name
    for name in ("adv_mean", "adv_std", "decision_entropy"):
        assert float(second["summaries"][name]) == pytest.approx(float(first["summaries"][name]), **same), name
    decisions = (TRAJECTORIES - 1) * (ROLLOUT - 1)
    assert float(first["summaries"]["decision_fraction"]) == pytest.approx(decisions / (TRAJECTORIES * ROLLOUT))
    assert len(first["kl_old"]) == decisions  # the KL the lr schedule reads is the decisions' too


def test_a_sample_sf_marks_invalid_cuts_the_vtrace_traces(tmp_path):
    """A sample of another policy (invalid): its target is its own value, and the step before it bootstraps
    from that value instead of reading the invalid sample's reward."""
    learner = make_learner(tmp_path, "--learning_rate=1e-9")
    batch = make_batch(learner)
    batch["policy_id"][0, 2] = 1
    targets = []

    def value_loss(new_values, old_values, target, *args):
        targets.append((new_values.detach().clone(), target.clone()))
        return Learner._value_loss(learner, new_values, old_values, target, *args)

    learner._value_loss = value_loss
    learner.train(batch)
    values, target = targets[-1]
    assert target[2] == pytest.approx(values[2].item(), abs=1e-6)
    assert target[1] == pytest.approx(batch["rewards"][0, 1].item() + GAMMA * values[2].item(), abs=1e-5)


def test_critic_warmup_trains_the_critics_only(tmp_path):
    learner = make_learner(tmp_path, "--learning_rate=0.01", "--critic_warmup_steps=1000")
    model = learner.actor_critic
    actors, critics = ([p.detach().clone() for p in m.parameters()] for m in (model.actors, model.critics))
    learner.train(make_batch(learner))
    assert all(torch.equal(a, p) for a, p in zip(actors, model.actors.parameters(), strict=True))
    assert not all(torch.equal(c, p) for c, p in zip(critics, model.critics.parameters(), strict=True))
    learner.env_steps = 1000  # warm-up over: the actors learn too
    learner.train(make_batch(learner, seed=1))
    assert not all(torch.equal(a, p) for a, p in zip(actors, model.actors.parameters(), strict=True))


def test_the_teacher_anchor_pulls_toward_the_imitated_policy_with_a_decaying_weight(tmp_path):
    from cage_sf.models import CC4ActorCritic

    cfg = resolve_config("smoke", [f"--train_dir={tmp_path}", "--imitate=analyse-restore", "--anchor_coeff=0.4"])
    path = anchor_path(cfg)
    path.parent.mkdir(parents=True)
    student = CC4ActorCritic(observation_space(), action_space(False), cfg)
    torch.save(student.state_dict(), path)
    anchor = TeacherAnchor(CC4ActorCritic(observation_space(), action_space(False), cfg), path, 0.4, 1000)
    assert [anchor.weight(steps) for steps in (0, 250, 1000, 5000)] == pytest.approx([0.4, 0.3, 0.0, 0.0])
    floored = TeacherAnchor(CC4ActorCritic(observation_space(), action_space(False), cfg), path, 0.4, 1000, 0.1)
    assert [floored.weight(steps) for steps in (0, 500, 1000, 5000)] == pytest.approx([0.4, 0.25, 0.1, 0.1])

    obs = {key: torch.rand((8, *space.shape)) for key, space in observation_space().spaces.items()}
    obs["agent_type"][:] = 1.0
    obs["valid_actions"][:] = 1.0

    def kl() -> torch.Tensor:
        logits = student.forward_tail(student.forward_head(obs), False, sample_actions=False)["action_logits"]
        return anchor.kl(obs, torch.log_softmax(logits, dim=1))

    assert kl().abs().max() < 1e-5  # the student is the teacher
    with torch.no_grad():
        for p in student.actors.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert (kl() > 1e-4).all()
    assert not any(p.requires_grad for p in anchor.policy.parameters())


def test_an_anchor_needs_an_imitated_policy():
    from cage_sf.errors import UsageError

    with pytest.raises(UsageError, match="needs --imitate"):
        resolve_config("smoke", ["--anchor_coeff=0.5"])


def test_an_anchor_floor_above_its_starting_weight_is_refused():
    from cage_sf.errors import UsageError

    with pytest.raises(UsageError, match="anchor_floor=0.5 is where"):
        resolve_config("smoke", ["--imitate=analyse-restore", "--anchor_coeff=0.2", "--anchor_floor=0.5"])


def test_the_learner_keeps_the_anchor_at_its_floor_once_the_decay_is_over(tmp_path):
    learner = make_learner(
        tmp_path, "--imitate=analyse-restore", "--anchor_coeff=0.4", "--anchor_decay_steps=1000", "--anchor_floor=0.1"
    )
    anchor_path(learner.cfg).parent.mkdir(parents=True, exist_ok=True)
    torch.save(learner.actor_critic.state_dict(), anchor_path(learner.cfg))
    learner.env_steps = 5000
    summaries = train_and_capture(learner, make_batch(learner, off_policy=0.5))["summaries"]
    assert float(summaries["anchor_weight"]) == pytest.approx(0.1)


def test_with_messages_a_busy_agents_bits_are_decisions(tmp_path):
    """A busy agent has only Sleep, but it still chooses the bits it sends: with --messages every valid row is
    a decision (policy loss, entropy and advantage statistics), while the anchor's KL stays on free rows."""
    learner = make_learner(tmp_path, "--learning_rate=1e-9", "--messages=True")
    summaries = train_and_capture(learner, make_batch(learner))["summaries"]
    assert float(summaries["decision_fraction"]) == pytest.approx(1.0)


def test_command_entropy_is_the_flat_entropy_less_the_targets_share():
    """H(flat) = H(command) + sum over commands of P(command) H(target | command), counted here command by command;
    moving probability between one command's targets changes the flat entropy, not the command's."""
    from cage_sf.losses import COMMAND_OF, command_entropy

    gen = torch.Generator().manual_seed(0)
    kinds = torch.tensor([0, 0, 1, 1])
    valid = torch.zeros(4, NUM_ACTIONS)
    for row, kind in enumerate(kinds.tolist()):
        valid[row, : cc4.NUM_ACTIONS[kind]] = (torch.rand(cc4.NUM_ACTIONS[kind], generator=gen) < 0.6).float()
    logits = (3 * torch.randn(4, NUM_ACTIONS, generator=gen)).masked_fill(valid < 0.5, -1e9)
    log_probs = torch.log_softmax(logits, dim=1)
    probs = log_probs.exp()
    flat = -(probs * log_probs).sum(dim=1)
    for row, kind in enumerate(kinds.tolist()):
        targets = 0.0
        for command in range(len(cc4.COMMANDS)):
            p = probs[row][(COMMAND_OF[kind] == command) & (valid[row] > 0)]
            if p.sum() > 0:
                q = p / p.sum()
                targets += p.sum() * -(q * q.clamp_min(1e-30).log()).sum()
        assert float(command_entropy(logits, valid, kinds)[row] + targets) == pytest.approx(float(flat[row]), abs=1e-4)

    decoys = ((COMMAND_OF[1] == cc4.COMMANDS.index("DeployDecoy")) & (valid[2] > 0)).nonzero()[:, 0]
    moved = logits.clone()
    moved[2, decoys] = torch.logsumexp(logits[2, decoys], 0) - np.log(len(decoys))  # the same total, now uniform
    assert torch.allclose(command_entropy(moved, valid, kinds), command_entropy(logits, valid, kinds), atol=1e-5)
    assert float(-(torch.softmax(moved[2], 0) * torch.log_softmax(moved[2], 0)).sum()) > float(flat[2]) + 1e-3


@pytest.mark.parametrize("share", [1.0, 0.25, 0.0])
def test_the_entropy_bonus_weighs_the_targets_by_the_share(tmp_path, share):
    """exploration loss = -coeff x (H(command) + share x H(target | command)) on decisions: the flat entropy at 1."""
    learner = make_learner(
        tmp_path, "--learning_rate=1e-9", "--exploration_loss_coeff=0.01", f"--target_entropy_share={share}"
    )
    captured = train_and_capture(learner, make_batch(learner))
    flat, commands = (float(captured["summaries"][k]) for k in ("decision_entropy", "command_entropy"))
    assert 0.5 < commands < flat - 0.5  # random actors: most of the entropy is in the targets
    expected = -0.01 * (commands + share * (flat - commands))
    assert float(captured["exploration"]) == pytest.approx(expected, rel=1e-5)


def test_a_target_entropy_share_needs_the_entropy_bonus():
    from cage_sf.errors import UsageError

    with pytest.raises(UsageError, match="target_entropy_share=0.5 weighs parts"):
        resolve_config("smoke", ["--target_entropy_share=0.5", "--exploration_loss=symmetric_kl"])


def test_the_best_anchor_moves_to_each_new_best_checkpoint_and_pulls_back_toward_it(tmp_path):
    """No anchor before the first best checkpoint; each new best (not a worse average) moves it to the actors as
    saved; once the actors drift away, the KL to it (and weight x KL in the loss) is positive."""
    learner = make_learner(tmp_path, "--learning_rate=1e-9", "--best_anchor_coeff=0.2")
    batch = make_batch(learner)
    assert "best_anchor_kl" not in train_and_capture(learner, batch)["summaries"]

    assert learner.save_best(0, "true_objective", -300.0)
    held = train_and_capture(learner, batch)
    assert float(held["summaries"]["best_anchor_kl"]) == pytest.approx(0.0, abs=1e-6)  # the anchor is the actors

    with torch.no_grad():
        for p in learner.actor_critic.actors.parameters():
            p.add_(0.1 * torch.randn_like(p))
    assert not learner.save_best(0, "true_objective", -400.0)  # worse: the anchor stays where it was
    drifted = train_and_capture(learner, batch)
    kl = float(drifted["summaries"]["best_anchor_kl"])
    assert kl > 1e-3
    assert float(drifted["summaries"]["best_anchor_weight"]) == pytest.approx(0.2)
    assert float(drifted["kl"]) == pytest.approx(0.2 * kl, rel=1e-5)  # kl_loss_coeff is 0: the anchor's term only

    assert learner.save_best(0, "true_objective", -250.0)  # better: the anchor moves to the drifted actors
    assert float(train_and_capture(learner, batch)["summaries"]["best_anchor_kl"]) == pytest.approx(0.0, abs=1e-6)


def test_a_resumed_run_anchors_to_its_best_checkpoint(tmp_path):
    first = make_learner(tmp_path, "--best_anchor_coeff=0.2")
    assert first.save_best(0, "true_objective", -300.0)
    saved = {k: v.clone() for k, v in first.actor_critic.state_dict().items()}

    resumed = make_learner(tmp_path, "--best_anchor_coeff=0.2")  # fresh weights, the same run directory
    train_and_capture(resumed, make_batch(resumed))
    anchor = resumed._best_anchor
    assert anchor.active
    assert all(torch.equal(v, saved[k]) for k, v in anchor.policy.state_dict().items())
    assert not any(p.requires_grad for p in anchor.policy.parameters())


def test_a_best_anchor_needs_the_vtrace_learner():
    from cage_sf.errors import UsageError

    with pytest.raises(UsageError, match="best_anchor_coeff and critic_warmup_steps are losses"):
        resolve_config("smoke", ["--best_anchor_coeff=0.1", "--with_vtrace=False"])
