import numpy as np
import pytest

from cage_sf import cc4
from cage_sf.backends import make_backend
from cage_sf.errors import UsageError
from cage_sf.policies import load_policy


def test_random_policy_picks_only_valid_actions():
    env = make_backend("synthetic", seed=0)
    obs, info = env.reset(seed=0)
    masks = {a: np.asarray(info[a]["action_mask"]) for a in cc4.AGENTS}
    act, rng = load_policy("random"), np.random.default_rng(0)
    chosen = {a: {act(obs, masks, rng)[a] for _ in range(300)} for a in cc4.AGENTS}
    for agent in cc4.AGENTS:
        assert masks[agent][sorted(chosen[agent])].all() and len(chosen[agent]) > 20


def test_sleep_policy_and_module_function_policies():
    assert load_policy("sleep")({}, {}, None) == {a: cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS}
    assert load_policy("cage_sf.policies:sleep") is load_policy("sleep")


@pytest.mark.parametrize(("name", "message"), [("nope", "unknown policy"), ("os:nope", "cannot load policy")])
def test_bad_policy_names(name, message):
    with pytest.raises(UsageError, match=message):
        load_policy(name)
