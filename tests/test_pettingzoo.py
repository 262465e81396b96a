import numpy as np
from pettingzoo.test import parallel_api_test

from cage_sf import cc4
from cage_sf.sim.parallel_env import CC4ParallelEnv


def test_passes_pettingzoo_parallel_api_test():
    parallel_api_test(CC4ParallelEnv(seed=0), num_cycles=600)


def test_episode_ends_for_every_agent_at_step_499():
    env = CC4ParallelEnv(seed=1)
    obs, infos = env.reset(seed=1)
    assert set(obs) == set(cc4.AGENTS) and obs["blue_agent_4"].shape == (210,)
    assert np.array_equal(infos["blue_agent_0"]["action_mask"], env.action_mask("blue_agent_0"))
    for step in range(1, cc4.EPISODE_STEPS):
        _, _, terminated, truncated, _ = env.step({a: cc4.sleep_action(cc4.agent_type(a)) for a in env.agents})
        assert all(terminated.values()) == all(truncated.values()) == (step == cc4.EPISODE_STEPS - 1)
    assert env.agents == []
