import numpy as np
import pytest

from cage_sf import backends, cc4
from cage_sf.backends import make_backend, resolve_backend
from cage_sf.errors import UsageError

RESTORE_0 = 33  # Restore(server_host_0) of a small agent: duration 5, server_host_0 always exists


def test_unknown_backend_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown backend 'nope'"):
        resolve_backend("nope")


def test_cyborg_backend_without_cyborg_says_how_to_install(monkeypatch):
    monkeypatch.setattr(backends, "cyborg_available", lambda: False)
    with pytest.raises(UsageError, match="github.com/cage-challenge/cage-challenge-4"):
        resolve_backend("cyborg")
    assert resolve_backend("auto") == "sim"


def test_auto_prefers_cyborg_when_importable(monkeypatch):
    monkeypatch.setattr(backends, "cyborg_available", lambda: True)
    assert resolve_backend("auto") == "cyborg"


def busy_sequence(env, agent="blue_agent_0"):
    """Submit Restore at step 1, then again every step: which steps report the agent busy, and rewards."""
    env.reset(seed=0)
    busy, rewards = [], []
    for _ in range(6):
        _, reward, *_ = env.step({agent: RESTORE_0})
        busy.append(agent in env.busy_agents())
        rewards.append(reward[agent])
    return busy, rewards


@pytest.mark.parametrize("backend", ["synthetic", "sim", pytest.param("cyborg", marks=pytest.mark.cyborg)])
def test_busy_rule_and_restore_cost(backend):
    busy, rewards = busy_sequence(make_backend(backend, seed=0))
    # Restore (5 steps) submitted at k=1 executes at the end of k=5; the agent is free again from k=6 on.
    assert busy == [True, True, True, True, False, True]
    # Restore costs -1 per submission, even while busy (spec §4.2)
    assert all(r <= -1 for r in rewards)


def test_synthetic_backend_shapes_masks_and_episode_end():
    env = make_backend("synthetic", seed=1, steps=10)
    obs, info = env.reset(seed=1)
    for agent in cc4.AGENTS:
        kind = cc4.agent_type(agent)
        assert obs[agent].shape == (cc4.OBS_SIZE[kind],)
        mask = np.asarray(info[agent]["action_mask"])
        assert mask.shape == (cc4.NUM_ACTIONS[kind],) and mask[cc4.sleep_action(kind)]
        hosts = cc4.HOST_SLOTS[kind]
        analyse, remove = mask[:hosts], mask[hosts + 1 : 2 * hosts + 1]
        assert (analyse == remove).all()
        per_subnet = analyse.reshape(cc4.SUBNETS[kind], 16)
        assert per_subnet[:, 0].all() and ((4 <= per_subnet.sum(1)) & (per_subnet.sum(1) <= 16)).all()
    dones = [env.step({})[2]["blue_agent_0"] for _ in range(9)]
    assert dones == [False] * 8 + [True] and env.agents == []
