import gc
from types import SimpleNamespace

import numpy as np
import pytest

from cage_sf.env_registry import make_cc4_env


@pytest.fixture
def restore_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_env_factory_builds_the_adapter_and_tunes_the_collector(restore_gc):
    """Rollout workers step CybORG faster with the collector tuned (bench/train_throughput.py --raw_gc_tuned)."""
    gc.unfreeze()
    cfg = SimpleNamespace(
        backend="synthetic",
        episode_steps=20,
        step_timeout_s=5.0,
        host_memory=True,
        batched_sampling=False,
        messages=False,
        privileged_critic=False,
    )
    env = make_cc4_env("cc4", cfg)
    assert env.num_agents == 5 and env.action_space.n == 242
    assert gc.get_freeze_count() > 0, "objects alive after env creation should be frozen"
    assert gc.get_threshold()[0] == 50_000
    obs, _ = env.reset()
    assert len(obs) == 5


def test_batched_sampling_gets_a_vector_of_envs_as_arrays(restore_gc):
    cfg = SimpleNamespace(
        backend="synthetic",
        episode_steps=20,
        step_timeout_s=5.0,
        host_memory=True,
        batched_sampling=True,
        vector_size=3,
        stagger_episodes=True,
        messages=False,
        privileged_critic=False,
    )
    env = make_cc4_env("cc4", cfg)
    obs, _ = env.reset()
    assert env.num_agents == 15 and obs["obs"].shape[0] == obs["valid_actions"].shape[0] == 15
    ends = {}  # staggered over the episode length: env k's first episode ends after k * 20 // 3 steps
    for step in range(1, 15):
        obs, _, terminated, truncated, _ = env.step(np.argmax(obs["valid_actions"], axis=1))
        for k in np.flatnonzero((terminated | truncated)[::5]):
            ends.setdefault(int(k), step)
    assert ends == {1: 6, 2: 13}
