"""Real CybORG CC4 behind our interface (skipped when CybORG is not installed)."""

from statistics import mean

import numpy as np
import pytest

from cage_sf import cc4
from cage_sf.adapter import CC4SampleFactoryEnv, CC4VectorEnv
from cage_sf.backends.cyborg import CybORGBackend

pytestmark = pytest.mark.cyborg

SLEEP = {a: cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS}


def evaluation_py_return(seed: int) -> float:
    """The loop of CybORG's Evaluation/evaluation.py for one episode of an all-Sleep policy."""
    env = CybORGBackend(seed=seed)
    env.reset(seed=seed)
    rewards = []
    for _ in range(500):
        actions = {agent: SLEEP[agent] for agent in env.agents}
        _, reward, terminated, truncated, _ = env.step(actions)
        if all(terminated.get(a, False) or truncated.get(a, False) for a in env.agents):
            break
        rewards.append(mean(reward.values()))
    return sum(rewards)


def test_adapter_return_counts_like_evaluation_py():
    seed = 7
    env = CC4SampleFactoryEnv(lambda: CybORGBackend(seed=seed), step_timeout_s=60)
    env.reset(seed=seed)
    for _ in range(499):
        *_, infos = env.step([SLEEP[a] for a in cc4.AGENTS])
    stats = infos[0]["episode_extra_stats"]
    expected = evaluation_py_return(seed)
    assert expected < 0 and stats["cc4/eval_return"] == pytest.approx(expected)
    assert sum(stats[f"cc4/reward_phase_{p}"] for p in range(3)) == pytest.approx(expected)


def test_busy_agent_may_only_sleep_on_cyborg():
    env = CC4VectorEnv(lambda: CybORGBackend(seed=1), num_envs=1, step_timeout_s=60)
    env.reset(seed=1)
    actions = [SLEEP[a] for a in cc4.AGENTS]
    actions[4] = 97  # Restore(ADM server_host_0): 5 steps
    only_sleep = []
    for _ in range(5):
        obs = env.step(actions)[0]
        only_sleep.append(obs["valid_actions"][4].sum() == 1)
        assert env._backends[0].busy_agents() == ({"blue_agent_4"} if only_sleep[-1] else set())
    assert only_sleep == [True, True, True, True, False]


def test_messages_reach_the_same_observation_slots_as_in_our_simulator():
    """The same messages through real CybORG and our simulator: every agent sees the same 32 message bits."""
    from cage_sf.sim import make_cc4

    rng = np.random.default_rng(0)
    cyborg, sim = CybORGBackend(seed=2), make_cc4(seed=2)
    cyborg.reset(seed=2)
    sim.reset(seed=2)
    for _ in range(3):
        messages = {agent: rng.integers(0, 2, cc4.MESSAGE_LENGTH) for agent in cc4.AGENTS}
        seen = [backend.step(dict(SLEEP), messages)[0] for backend in (cyborg, sim)]
        for agent in cc4.AGENTS:
            slots = cc4.agent_layout(cc4.agent_type(agent))["messages"]
            expected = np.concatenate([messages[sender] for sender in cc4.AGENTS if sender != agent])
            np.testing.assert_array_equal(np.asarray(seen[0][agent])[slots], expected)
            np.testing.assert_array_equal(np.asarray(seen[1][agent])[slots], expected)
