import logging

import numpy as np
import pytest

from cage_sf import cc4
from cage_sf.adapter import FEATURES, CC4SampleFactoryEnv, CC4VectorEnv
from cage_sf.backends import make_backend
from cage_sf.backends.synthetic import SyntheticBackend

SLEEP = [cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS]


class RecordingBackend(SyntheticBackend):
    """The synthetic backend, recording what the adapter submits; can be told to fail or stall."""

    def __init__(self, steps=cc4.EPISODE_STEPS, fail_at=None, stall_s=0.0):
        super().__init__(seed=0, steps=steps)
        self.submitted, self.team_rewards, self.phases = [], [], []
        self.fail_at, self.stall_s = fail_at, stall_s

    def reset(self, seed=None):
        obs, info = super().reset(seed)
        self._observations_at_reset = obs
        return obs, info

    def step(self, actions, messages=None):
        self.submitted.append(dict(actions))
        if self.fail_at is not None and len(self.submitted) == self.fail_at:
            raise RuntimeError("boom")
        if self.stall_s:
            import time

            time.sleep(self.stall_s)
        result = super().step(actions, messages)
        self.team_rewards.append(np.mean(list(result[1].values())))
        self.phases.append(int(result[0]["blue_agent_0"][cc4.PHASE_INDEX]))
        return result


def make_env(timeout=5.0, **kwargs):
    backends = []

    def factory():
        backends.append(RecordingBackend(**kwargs))
        return backends[-1]

    return CC4SampleFactoryEnv(factory, step_timeout_s=timeout), backends


def test_observations_are_padded_and_typed():
    env, backends = make_env()
    obs, infos = env.reset(seed=0)
    assert len(obs) == len(infos) == 5
    team = np.concatenate([o["obs"][: FEATURES[cc4.agent_type(a)]] for a, o in zip(cc4.AGENTS, obs, strict=True)])
    for agent, o in zip(cc4.AGENTS, obs, strict=True):
        kind = cc4.agent_type(agent)
        assert env.observation_space.contains(o)
        assert o["agent_type"][0] == kind
        assert np.array_equal(o["obs"][: cc4.OBS_SIZE[kind]], backends[0]._observations_at_reset[agent])
        assert not o["obs"][FEATURES[kind] :].any()
        assert np.array_equal(o["team"], team)  # the value networks see every agent's features
        assert not o["valid_actions"][cc4.NUM_ACTIONS[kind] :].any()
        assert o["valid_actions"][cc4.sleep_action(kind)] == 1


def test_busy_agents_stay_active_limited_to_sleep_and_submit_nothing():
    env, backends = make_env()
    env.reset(seed=0)
    restore = [33, 49, 49, 49, 97]  # agents 0 and 4 restore (5 steps), the others sleep
    valid, busy_features = [], []
    for _ in range(6):
        obs, _, _, _, infos = env.step(restore)
        assert all(info.get("is_active", True) for info in infos)  # SF trains on every agent's every step
        valid.append([o["valid_actions"].sum() for o in obs])
        busy_features.append(obs[0]["obs"][cc4.OBS_SIZE[cc4.SMALL] :][:3].tolist())
    submitted = backends[0].submitted
    assert [sorted(s) for s in submitted[1:5]] == [["blue_agent_1", "blue_agent_2", "blue_agent_3"]] * 4
    assert sorted(submitted[5]) == list(cc4.AGENTS)
    # while busy, Sleep is the only valid action (probability 1, no policy gradient); free again at step 5
    assert [v[0] for v in valid[:4]] == [1] * 4 and [v[4] for v in valid[:4]] == [1] * 4
    assert valid[0][1] > 1 and valid[4][0] > 1 and valid[4][4] > 1
    # what the agent could not see before: busy, steps remaining / 5, episode progress
    assert busy_features[0] == pytest.approx([1.0, 0.8, 0.002]) and busy_features[3] == pytest.approx([1, 0.2, 0.008])
    assert busy_features[4][:2] == [0.0, 0.0]


def random_valid_actions(valid_actions: np.ndarray, rng) -> np.ndarray:
    return np.argmax(rng.random(valid_actions.shape) * valid_actions, axis=1)


@pytest.mark.parametrize("backend", ["sim", pytest.param("cyborg", marks=pytest.mark.cyborg)])
def test_busy_tracking_agrees_with_the_backend(backend):
    """The adapter (and the exported agent: the same memory) decide who is busy from durations alone."""
    env = CC4VectorEnv(lambda: make_backend(backend, seed=3), num_envs=2, step_timeout_s=60)
    obs, _ = env.reset(seed=3)
    rng, busy_steps = np.random.default_rng(3), 0
    for _ in range(60 if backend == "cyborg" else 600):
        obs, *_ = env.step(random_valid_actions(obs["valid_actions"], rng))
        only_sleep = obs["valid_actions"].sum(axis=1).reshape(2, 5) == 1
        for busy, backend_env in zip(only_sleep, env._backends, strict=True):
            assert {a for a, b in zip(cc4.AGENTS, busy, strict=True) if b} == backend_env.busy_agents()
        busy_steps += only_sleep.sum()
    assert busy_steps > 100


def test_a_vector_of_envs_steps_each_as_a_single_env_would():
    """Batched sampling's env (K envs, arrays) against K non-batched envs on the same seeds and actions,
    across episode ends: the same observations, rewards, dones and episode statistics, row for row."""
    k, steps = 3, 40

    def backend():
        return make_backend("sim", steps=steps)

    vector = CC4VectorEnv(backend, num_envs=k, step_timeout_s=60)
    singles = [CC4SampleFactoryEnv(backend, step_timeout_s=60) for _ in range(k)]
    obs, _ = vector.reset(seed=5)
    single_obs = [env.reset(seed=5 * k + i)[0] for i, env in enumerate(singles)]
    rng, episode_ends = np.random.default_rng(0), 0
    for _ in range(2 * steps + 5):
        for key, value in obs.items():
            assert np.array_equal(value, np.stack([o[key] for env_obs in single_obs for o in env_obs]))
        actions = random_valid_actions(obs["valid_actions"], rng)
        obs, rewards, terminated, truncated, infos = vector.step(actions)
        results = [env.step(actions[5 * i : 5 * i + 5]) for i, env in enumerate(singles)]
        single_obs = [r[0] for r in results]
        assert rewards.tolist() == [x for r in results for x in r[1]]
        assert terminated.tolist() == [x for r in results for x in r[2]]
        assert truncated.tolist() == [x for r in results for x in r[3]]
        assert infos == [x for r in results for x in r[4]]
        episode_ends += sum("episode_extra_stats" in info for info in infos)
    assert episode_ends == 2 * 5 * k


def test_staggered_envs_end_their_episodes_at_spread_steps():
    """With stagger_steps = the episode length, env k's first episode is cut after k/K of it (unreported, out of
    the best-checkpoint metric); from then on the K envs end full episodes a quarter of an episode apart."""
    k, steps = 4, 40
    vector = CC4VectorEnv(lambda: make_backend("sim", steps=steps), num_envs=k, step_timeout_s=60, stagger_steps=steps)
    obs, _ = vector.reset(seed=1)
    rng, ends = np.random.default_rng(0), {env: [] for env in range(k)}
    for step in range(1, 2 * steps + 1):
        obs, _, terminated, truncated, infos = vector.step(random_valid_actions(obs["valid_actions"], rng))
        for env in range(k):
            rows = slice(5 * env, 5 * env + 5)
            if (terminated[rows] | truncated[rows]).all():
                ends[env].append((step, infos[5 * env].get("true_objective", "-") is not None))
            else:
                assert not (terminated[rows] | truncated[rows]).any()
    full = steps - 1  # env steps of an episode as the vector sees them (the backend's last one ends it)
    assert ends == {
        0: [(full, True), (2 * full, True)],
        1: [(10, False), (10 + full, True)],
        2: [(20, False), (20 + full, True)],
        3: [(30, False), (30 + full, True)],
    }


def test_a_fault_ends_only_that_envs_episode():
    backends = []

    def factory():
        backends.append(RecordingBackend(fail_at=2 if len(backends) == 1 else None))
        return backends[-1]

    env = CC4VectorEnv(factory, num_envs=3, step_timeout_s=5)
    env.reset(seed=0)
    env.step(np.tile(SLEEP, 3))
    obs, rewards, terminated, truncated, infos = env.step(np.tile(SLEEP, 3))
    assert truncated.tolist() == [False] * 5 + [True] * 5 + [False] * 5 and not terminated.any()
    assert [info.get("true_objective", "-") for info in infos[::5]] == ["-", None, "-"]
    assert len(backends) == 4 and env.observation_space.contains({key: v[5] for key, v in obs.items()})
    env.step(np.tile(SLEEP, 3))
    assert [len(b.submitted) for b in backends] == [3, 2, 3, 1]


def test_padding_actions_become_sleep():
    env, backends = make_env()
    env.reset(seed=0)
    env.step([241, 100, 82, 0, 241])
    assert backends[0].submitted[0] == {
        "blue_agent_0": 49,
        "blue_agent_1": 49,
        "blue_agent_2": 49,
        "blue_agent_3": 0,
        "blue_agent_4": 241,
    }


def test_episode_auto_resets_with_evaluation_style_stats():
    env, backends = make_env(steps=cc4.EPISODE_STEPS)
    env.reset(seed=0)
    last = cc4.EPISODE_STEPS - 1  # CC4 is done after this step
    for step in range(1, last + 1):
        obs, rewards, terminated, truncated, infos = env.step(SLEEP)
        assert terminated[0] == (step == last)
    stats = infos[0]["episode_extra_stats"]
    backend = backends[0]
    # evaluation.py sums the mean blue reward of every step except the final one
    assert stats["cc4/eval_return"] == pytest.approx(sum(backend.team_rewards[: last - 1]))
    for phase in range(3):
        expected = sum(
            r for r, p in zip(backend.team_rewards[: last - 1], backend.phases[: last - 1], strict=True) if p == phase
        )
        assert stats[f"cc4/reward_phase_{phase}"] == pytest.approx(expected)
    assert stats["cc4/env_fault"] == 0 and infos[0]["true_objective"] == stats["cc4/eval_return"]
    assert obs[0]["obs"][cc4.PHASE_INDEX] == 0  # the new episode's first observation
    assert len(backend.submitted) == last
    env.step(SLEEP)
    assert len(backend.submitted) == cc4.EPISODE_STEPS and backend._t == 1


def test_exception_in_backend_ends_episode_and_rebuilds(caplog):
    env, backends = make_env(fail_at=3)
    env.reset(seed=0)
    env.step(SLEEP)
    env.step(SLEEP)
    with caplog.at_level(logging.ERROR):
        obs, rewards, terminated, truncated, infos = env.step(SLEEP)
    assert truncated == [True] * 5 and rewards == [0.0] * 5
    assert infos[0]["episode_extra_stats"] == {"cc4/env_fault": 1.0}
    assert infos[0]["true_objective"] is None  # a crash's partial return must not look like a great episode
    assert len(backends) == 2 and env.observation_space.contains(obs[0])
    assert "RuntimeError: boom" in caplog.text
    env.step(SLEEP)  # training goes on with the rebuilt env
    assert len(backends[1].submitted) == 1


def test_traceback_logged_for_first_fault_only(caplog):
    env, backends = make_env(fail_at=1)
    env.reset(seed=0)
    with caplog.at_level(logging.ERROR):
        env.step(SLEEP)
        env.step(SLEEP)  # the rebuilt backend fails at its first step too
    assert caplog.text.count("Traceback") == 1 and len(caplog.records) == 2


def test_slow_step_counts_as_fault():
    env, backends = make_env(stall_s=0.05, timeout=0.01)
    env.reset(seed=0)
    *_, truncated, infos = env.step(SLEEP)
    assert truncated == [True] * 5 and infos[0]["episode_extra_stats"]["cc4/env_fault"] == 1.0
    assert len(backends) == 2


def test_messages_reach_the_other_agents_in_this_steps_observation():
    """With messages, each agent's row is its action then 8 bits; the backend delivers them in the same step and
    every agent sees the other four agents' bits, senders in ascending order (docs/cc4.md §3.5)."""
    env = CC4VectorEnv(lambda: make_backend("sim"), 2, 5.0, messages=True)
    assert env.action_space[0].n == 242 and len(env.action_space) == 1 + cc4.MESSAGE_LENGTH
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        bits = rng.integers(0, 2, (env.num_agents, cc4.MESSAGE_LENGTH))
        actions = np.concatenate([random_valid_actions(obs["valid_actions"], rng)[:, None], bits], axis=1)
        obs, *_ = env.step(actions)
        for row in range(env.num_agents):
            env_bits, agent = bits[row - row % 5 : row - row % 5 + 5], row % 5
            layout = cc4.agent_layout(cc4.agent_type(cc4.AGENTS[agent]))
            received = obs["obs"][row, layout["messages"]]
            np.testing.assert_array_equal(received, np.delete(env_bits, agent, axis=0).ravel())


def test_the_single_env_form_takes_the_same_rows_per_agent():
    env = CC4SampleFactoryEnv(lambda: make_backend("sim"), 5.0, messages=True)
    env.reset(seed=0)
    sleep = [cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS]
    obs, *_ = env.step([[action, *([i % 2] * cc4.MESSAGE_LENGTH)] for i, action in enumerate(sleep)])
    layout = cc4.agent_layout(cc4.SMALL)
    assert obs[0]["obs"][layout["messages"]].tolist() == [1.0] * 8 + [0.0] * 8 + [1.0] * 8 + [0.0] * 8


def test_the_privileged_state_is_the_simulators_true_state_for_every_agent_of_its_env():
    from cage_sf.sim import make_cc4

    sims = []

    def backend():
        sims.append(make_cc4(seed=len(sims)))
        return sims[-1]

    env = CC4VectorEnv(backend, 2, step_timeout_s=60.0, privileged=True)
    obs, _ = env.reset(seed=0)
    sleep = np.tile([cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS], 2)
    for _ in range(120):  # red spreads while blue sleeps
        obs, *_ = env.step(sleep)
    state = obs["state"].reshape(2, len(cc4.AGENTS), -1)
    for k, sim in enumerate(sims):
        assert (state[k] == sim.privileged_state()).all()
        slots = state[k, 0, : 9 * 16 * 3].reshape(9, 16, 3)
        held = {s.host for agent in sim.red.agents for s in agent.sessions.values()}
        topo = sim.topology
        subnets, slot_numbers = np.nonzero(slots[..., 0])
        assert {int(topo.slot_host[subnet, slot]) for subnet, slot in zip(subnets, slot_numbers, strict=True)} == held
        assert slots[..., 2].sum() == sim.hosts.malware.sum() > 0
        assert state[k, 0, -1] == pytest.approx(sim.step_count / cc4.EPISODE_STEPS)
    assert "state" not in CC4VectorEnv(backend, 1, step_timeout_s=60.0).reset()[0]


class LastObservations:
    """A backend proxy keeping what it last observed, so a scripted policy can drive the adapter."""

    def __init__(self, backend):
        self.backend, self.last = backend, None

    def reset(self, seed=None):
        self.last, info = self.backend.reset(seed)
        return self.last, info

    def step(self, actions, messages=None):
        result = self.backend.step(actions, messages)
        self.last = result[0]
        return result

    def __getattr__(self, name):
        return getattr(self.backend, name)


def test_command_mix_is_each_commands_share_of_the_free_agents_decisions():
    """cc4/command_<Name> of an episode equals the share of scripted restore-decoy's actions by agents the backend
    did not report busy (a busy agent's action is dropped: no decision) that went to each command; it sums to 1."""
    from cage_sf.scripted import load_policy

    k, steps = 2, 60
    backends = []

    def factory():
        backends.append(LastObservations(make_backend("sim", steps=steps)))
        return backends[-1]

    env = CC4VectorEnv(factory, k, step_timeout_s=60)
    env.reset(seed=4)
    counts, policies, mixes = np.zeros((k, len(cc4.COMMANDS))), [None] * k, []
    commands = {a: cc4.action_commands(cc4.agent_type(a)) for a in cc4.AGENTS}
    while len(mixes) < 2 * k:
        actions = []
        for i, backend in enumerate(backends):
            if backend.step_count == 0:  # a fresh scripted policy each episode
                policies[i] = load_policy("restore-decoy")()
            masks = {a: backend.action_mask(a) for a in cc4.AGENTS}
            chosen = policies[i](backend.last, masks, None, {a: backend.analysis(a) for a in cc4.AGENTS})
            for agent in set(cc4.AGENTS) - backend.busy_agents():
                counts[i, cc4.COMMANDS.index(commands[agent][chosen[agent]])] += 1
            actions += [chosen[a] for a in cc4.AGENTS]
        *_, infos = env.step(np.array(actions))
        for i in range(k):
            if "episode_extra_stats" in infos[5 * i]:
                stats = infos[5 * i]["episode_extra_stats"]
                mixes.append([stats[f"cc4/command_{c}"] for c in cc4.COMMANDS])
                assert mixes[-1] == pytest.approx(counts[i] / counts[i].sum())
                assert counts[i].sum() < 5 * steps  # Restore and DeployDecoy kept agents busy: fewer decisions
                counts[i] = 0
    assert np.sum(mixes, axis=1) == pytest.approx(1.0)
    used = np.flatnonzero(np.max(mixes, axis=0))
    assert {cc4.COMMANDS[c] for c in used} >= {"Sleep", "Restore", "DeployDecoy"}
