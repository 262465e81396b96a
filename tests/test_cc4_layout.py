import numpy as np
import pytest

from cage_sf import cc4


def test_action_index_layout_matches_spec():
    small, large = cc4.action_commands(cc4.SMALL), cc4.action_commands(cc4.LARGE)
    assert (len(small), len(large)) == (82, 242)
    assert (cc4.sleep_action(cc4.SMALL), cc4.sleep_action(cc4.LARGE)) == (49, 145)
    assert np.flatnonzero(cc4.restore_actions(cc4.SMALL)).tolist() == list(range(33, 49))
    assert np.flatnonzero(cc4.restore_actions(cc4.LARGE)).tolist() == list(range(97, 145))
    assert small[50:58] == ["AllowTrafficZone"] * 8 and large[170:194] == ["BlockTrafficZone"] * 24
    assert cc4.action_durations(cc4.SMALL)[33] == 5 and cc4.action_durations(cc4.LARGE)[194] == 2


@pytest.mark.cyborg
def test_action_layout_matches_cyborg_labels():
    from cage_sf.backends.cyborg import CybORGBackend

    env = CybORGBackend(seed=3)
    env.reset(seed=3)
    for agent in cc4.AGENTS:
        labels = env.action_labels(agent)
        commands = cc4.action_commands(cc4.agent_type(agent))
        assert len(labels) == len(commands) == env.action_space(agent).n
        for label, command in zip(labels, commands, strict=True):
            assert command in label, (agent, label, command)
