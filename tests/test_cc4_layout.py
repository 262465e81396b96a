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


def test_observation_layout_matches_spec():
    """docs/cc4.md §4.1: per defended subnet a block of 59 (one-hot, blocked sources, comms bits, then 16 process
    and 16 connection flags); agents 0-3: 92 elements, messages 60-91; agent 4: 210, PAZ's block at 119, messages
    178-209. These literals are the spec; everything else reads the layout from cc4."""
    assert cc4.OBS_SIZE == (92, 210) and cc4.PHASE_INDEX == 0 and cc4.SUBNET_BLOCK == 59
    assert (cc4.SUBNET_ONEHOT, cc4.BLOCKED_SOURCES, cc4.COMMS_POLICY) == (0, 9, 18) and cc4.SUBNET_FACTS == 27
    assert (cc4.PROCESS_FLAGS, cc4.CONNECTION_FLAGS) == (27, 43)
    assert [cc4.subnet_block_start(b) for b in range(3)] == [1, 60, 119]
    assert cc4.message_indices(cc4.SMALL) == list(range(60, 92))
    assert cc4.message_indices(cc4.LARGE) == list(range(178, 210))
    assert cc4.EPISODE_STEPS == 500


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
