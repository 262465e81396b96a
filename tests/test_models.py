import numpy as np
import pytest
import torch

from cage_sf import cc4
from cage_sf.adapter import FEATURES, TEAM_SIZE, CC4SampleFactoryEnv
from cage_sf.backends.synthetic import SyntheticBackend
from cage_sf.models import MASKED_LOGIT, CC4ActorCritic
from cage_sf.train import resolve_config


@pytest.fixture(scope="module")
def env():
    return CC4SampleFactoryEnv(lambda: SyntheticBackend(seed=0), step_timeout_s=5.0)


@pytest.fixture(scope="module")
def model(env):
    cfg = resolve_config("smoke", ["--backend=synthetic"])
    torch.manual_seed(0)
    return CC4ActorCritic(env.observation_space, env.action_space, cfg)


def batch(env, episodes=3):
    """Observations of all five agents over a few resets: both agent types, varied masks."""
    rows = []
    for seed in range(episodes):
        obs, _ = env.reset(seed=seed)
        rows += obs
    return {k: torch.as_tensor(np.stack([r[k] for r in rows])) for k in rows[0]}


def test_hidden_sizes_come_from_the_preset(model):
    linear = [m.out_features for m in model.actors[cc4.SMALL] if isinstance(m, torch.nn.Linear)]
    assert linear == [256, 256, 128, 82]
    linear = [m.in_features for m in model.actors[cc4.LARGE] if isinstance(m, torch.nn.Linear)]
    assert linear == [FEATURES[cc4.LARGE], 256, 256, 128]
    linear = [m.in_features for m in model.critics[cc4.SMALL] if isinstance(m, torch.nn.Linear)]
    assert linear == [TEAM_SIZE, 256, 256, 128]  # every critic sees the whole team


def test_actor_and_value_networks_are_separate(model):
    actor = {id(p) for p in model.actors.parameters()}
    critic = {id(p) for p in model.critics.parameters()}
    assert actor.isdisjoint(critic)


def test_invalid_actions_are_masked_and_never_sampled(env, model):
    obs = batch(env)
    rnn = torch.zeros(obs["obs"].shape[0], 2)
    with torch.no_grad():
        result = model(obs, rnn)
        logits = result["action_logits"]
        invalid = obs["valid_actions"] < 0.5
        assert (logits[invalid] == MASKED_LOGIT).all() and (logits[~invalid] > MASKED_LOGIT / 2).all()
        dist = model.action_distribution()
        for _ in range(200):
            actions = dist.sample()
            assert obs["valid_actions"].gather(1, actions.view(-1, 1)).all()
        assert torch.isfinite(dist.entropy()).all() and torch.isfinite(dist.log_prob(actions)).all()
        assert dist.kl_divergence(dist).abs().max() < 1e-6


def test_each_agent_type_uses_only_its_own_networks(env, model):
    obs = batch(env)
    rnn = torch.zeros(obs["obs"].shape[0], 2)
    small = obs["agent_type"][:, 0] == 0
    with torch.no_grad():
        before, values_before = model(obs, rnn), model(obs, rnn, values_only=True)["values"]
        for p in model.actors[cc4.LARGE].parameters():
            p.add_(1.0)
        for p in model.critics[cc4.LARGE].parameters():
            p.add_(1.0)
        after, values_after = model(obs, rnn), model(obs, rnn, values_only=True)["values"]
    assert torch.equal(before["action_logits"][small], after["action_logits"][small])
    assert torch.equal(values_before[small], values_after[small])
    assert not torch.equal(values_before[~small], values_after[~small])


@pytest.mark.parametrize("vtrace", [True, False])
def test_the_inference_call_runs_the_critics_only_without_vtrace(env, vtrace):
    """Under V-trace the learner recomputes every value it uses, so acting needs no critic (most of the cost);
    GAE reads the values stored at inference, so without V-trace they are computed."""
    cfg = resolve_config("smoke", ["--backend=synthetic", f"--with_vtrace={vtrace}"])
    model = CC4ActorCritic(env.observation_space, env.action_space, cfg)
    obs = batch(env, episodes=1)
    calls = []
    for critic in model.critics:
        critic.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        acted = model(obs, torch.zeros(5, 2))
        assert bool(calls) == (not vtrace) and acted["actions"].shape == (5,)
        assert (acted["values"] != 0).all() == (not vtrace)
        assert (model(obs, torch.zeros(5, 2), values_only=True)["values"] != 0).all()


def test_a_busy_agent_sleeps_with_probability_one_and_no_policy_gradient(env, model):
    """Busy rows (only Sleep valid) enter V-trace with ratio 1 and contribute no policy or entropy gradient."""
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step([33, 49, 49, 49, 97])  # agents 0 and 4 now restore for 5 steps
    batch = {k: torch.as_tensor(np.stack([o[k] for o in obs])) for k in obs[0]}
    model.zero_grad()
    result = model(batch, torch.zeros(5, 2))
    dist = model.action_distribution()
    sleep = torch.tensor([cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS])
    log_prob, entropy = dist.log_prob(sleep.view(-1, 1)).view(-1), dist.entropy()
    busy = torch.tensor([True, False, False, False, True])
    assert torch.equal(log_prob[busy], torch.zeros(2)) and torch.equal(entropy[busy], torch.zeros(2))
    (log_prob[busy].sum() + entropy[busy].sum()).backward()
    assert all(p.grad is None or not p.grad.any() for p in model.actors.parameters())
    assert torch.isfinite(result["values"]).all()


def test_the_actor_runs_on_rows_with_a_choice_only_and_gives_them_the_logits_of_a_full_pass(env, model, monkeypatch):
    """A busy row's distribution (Sleep: 1) does not depend on the actor, so the actor skips it; the rows with a
    choice get exactly the logits the actor gives them when it sees every row."""
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step([33, 49, 49, 49, 97])  # agents 0 and 4 now restore for 5 steps
    batch = {k: torch.as_tensor(np.stack([o[k] for o in obs])) for k in obs[0]}
    seen, logits = [], model.actors.logits

    def counted(features, valid, kind):
        seen.append(len(features))
        return logits(features, valid, kind)

    monkeypatch.setattr(model.actors, "logits", counted)
    model(batch, torch.zeros(5, 2))
    assert sorted(seen) == [3]  # agents 1-3 (small) choose; 0 and 4 are busy and the large type has no other row
    chosen = model.action_distribution().log_probs
    for agent in (1, 2, 3):
        features, valid = batch["obs"][agent : agent + 1, : FEATURES[0]], batch["valid_actions"][agent : agent + 1]
        full = logits(features, valid[:, : cc4.NUM_ACTIONS[0]], 0)[:, : cc4.NUM_ACTIONS[0]]
        full = full.masked_fill(valid[:, : cc4.NUM_ACTIONS[0]] < 0.5, MASKED_LOGIT)
        torch.testing.assert_close(chosen[agent, : cc4.NUM_ACTIONS[0]], torch.log_softmax(full, dim=1)[0])


def test_critics_run_once_per_distinct_team_row_with_the_same_values_and_gradients(env, model):
    """The small agents of one env step share their team row; computing each distinct row once must give
    exactly what computing every row gives, and the same gradients."""
    env.reset(seed=0)
    rows = [o for _ in range(3) for o in env.step([cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS])[0]]
    obs = {k: torch.as_tensor(np.stack([r[k] for r in rows])) for k in rows[0]}
    team = obs["team"]
    calls = []
    hook = model.critics[cc4.SMALL].register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    values = model(obs, torch.zeros(team.shape[0], 2), values_only=True)["values"]
    hook.remove()
    small = obs["agent_type"][:, 0] < 0.5
    assert calls == [3]  # 12 small-agent rows over 3 env steps: 3 distinct team rows
    kinds = obs["agent_type"][:, 0].long()
    each_row = torch.stack([model.critics[k](row[None])[0, 0] for k, row in zip(kinds, team, strict=True)])
    assert torch.allclose(values, each_row, atol=1e-6)

    model.zero_grad()
    values.sum().backward()
    deduplicated = [p.grad.clone() for p in model.critics[cc4.SMALL].parameters()]
    model.zero_grad()
    each_row[small].sum().backward()
    for ours, reference in zip(deduplicated, model.critics[cc4.SMALL].parameters(), strict=True):
        assert torch.allclose(ours, reference.grad, atol=1e-5)

    keys = model.input_keys.clone()
    model.input_keys[:, 0] = 0.0  # every row looks alike to the first projection: the second must catch it
    calls.clear()
    hook = model.critics[cc4.SMALL].register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        values_when_fooled = model(obs, torch.zeros(team.shape[0], 2), values_only=True)["values"]
    hook.remove()
    model.input_keys.copy_(keys)
    assert calls == [12] and torch.allclose(values_when_fooled, each_row, atol=1e-6)


def test_a_team_critic_runs_once_per_env_step_and_gives_every_agent_of_it_the_same_value(env):
    """With --team_critic the five agents of an env step (the same team row and reward) share one critic."""
    model = CC4ActorCritic(env.observation_space, env.action_space, resolve_config("smoke", ["--team_critic=True"]))
    assert len(model.critics) == 1
    env.reset(seed=0)
    rows = [o for _ in range(3) for o in env.step([cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS])[0]]
    obs = {k: torch.as_tensor(np.stack([r[k] for r in rows])) for k in rows[0]}
    calls = []
    hook = model.critics[0].register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        values = model(obs, torch.zeros(len(rows), 2), values_only=True)["values"]
    hook.remove()
    assert calls == [3]  # 15 rows over 3 env steps: 3 distinct team rows, both agent types together
    with torch.no_grad():
        each_row = model.critics[0](obs["team"])[:, 0]
    torch.testing.assert_close(values, each_row)
    assert all(len(set(values[step * 5 : step * 5 + 5].tolist())) == 1 for step in range(3))


def test_sampled_actions_follow_the_policy_and_never_pick_a_masked_one(env, model):
    """The inference worker's sampling (inverse CDF) against the distribution's own probabilities."""
    obs = batch(env, episodes=1)
    n = 4000
    many = {k: v.repeat(n, *[1] * (v.dim() - 1)) for k, v in obs.items()}
    with torch.no_grad():
        result = model(many, torch.zeros(5 * n, 2))
    probs = model.action_distribution().probs[:5]
    actions = result["actions"].view(n, 5)
    assert obs["valid_actions"].gather(1, actions.T).all()
    for agent in range(5):
        frequencies = torch.bincount(actions[:, agent], minlength=probs.shape[1]).float() / n
        assert (frequencies - probs[agent]).abs().max() < 0.03
    chosen_log_probs = torch.log(probs.repeat(n, 1).gather(1, result["actions"].view(-1, 1))).view(-1)
    assert torch.allclose(result["log_prob_actions"], chosen_log_probs, atol=1e-4)


def test_message_bits_are_sampled_with_the_action_and_their_log_probs_add():
    """With messages the action space is (action, 8 bits): the inference worker's samples follow each bit's
    probability, and its log-prob is the one the learner's tuple distribution gives (action + bits)."""
    env = CC4SampleFactoryEnv(lambda: SyntheticBackend(seed=0), step_timeout_s=5.0, messages=True)
    cfg = resolve_config("smoke", ["--backend=synthetic", "--messages=True"])
    torch.manual_seed(0)
    model = CC4ActorCritic(env.observation_space, env.action_space, cfg)
    obs = batch(env, episodes=1)
    n = 4000
    many = {k: v.repeat(n, *[1] * (v.dim() - 1)) for k, v in obs.items()}
    with torch.no_grad():
        result = model(many, torch.zeros(5 * n, 2))
    distribution = model.action_distribution()
    actions = result["actions"]
    assert actions.shape == (5 * n, 1 + cc4.MESSAGE_LENGTH) and set(actions[:, 1:].unique().tolist()) == {0, 1}
    assert obs["valid_actions"].repeat(n, 1).gather(1, actions[:, :1]).all()
    torch.testing.assert_close(result["log_prob_actions"], distribution.log_prob(actions), atol=1e-4, rtol=0)
    bit_probs = torch.stack([bit.probs[:5, 1] for bit in distribution.distributions[1:]], dim=1)
    frequencies = actions[:, 1:].view(n, 5, cc4.MESSAGE_LENGTH).float().mean(dim=0)
    assert (frequencies - bit_probs).abs().max() < 0.03


def test_the_privileged_state_reaches_the_critics_only():
    """With --privileged_critic the critics read the simulator's true state; the actors (and so the exported
    submission, which holds the actors' weights only) are the same networks as without, blind to it."""
    from cage_sf.sim import make_cc4

    env = CC4SampleFactoryEnv(lambda: make_cc4(seed=0), step_timeout_s=5.0, privileged=True)
    cfg = resolve_config("smoke", ["--privileged_critic=True"])
    torch.manual_seed(0)
    model = CC4ActorCritic(env.observation_space, env.action_space, cfg)
    plain = CC4ActorCritic(env.observation_space, env.action_space, resolve_config("smoke", []))
    shapes = {k: v.shape for k, v in model.actors.state_dict().items()}
    assert shapes == {k: v.shape for k, v in plain.actors.state_dict().items()}

    obs = batch(env, episodes=2)
    assert obs["state"].shape[1] > 0 and obs["state"].abs().sum() > 0
    with torch.no_grad():
        before = model(obs, torch.zeros(len(obs["obs"]), 0), values_only=False)
        before_values = model(obs, torch.zeros(len(obs["obs"]), 0), values_only=True)["values"]
        changed = dict(obs, state=torch.rand_like(obs["state"]))
        after = model(changed, torch.zeros(len(obs["obs"]), 0), values_only=False)
        after_values = model(changed, torch.zeros(len(obs["obs"]), 0), values_only=True)["values"]
    assert torch.equal(before["action_logits"], after["action_logits"])
    assert not torch.allclose(before_values, after_values)
