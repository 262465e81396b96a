"""The per-agent memory both training and the exported submission compute (agent/cc4_memory.py)."""

import numpy as np
import pytest

from cage_sf import cc4
from cage_sf.agent import cc4_memory, cc4_networks
from cage_sf.agent.cc4_memory import (
    AGENT_FEATURES,
    ANALYSED_DECAY,
    ESCALATION_FILE,
    HOST_FEATURES,
    SHELL_FILE,
    TRACE_DECAY,
    AgentMemories,
    feature_size,
    malware_in_files,
)

SMALL = cc4.agent_layout(cc4.SMALL)
OBS = cc4.OBS_SIZE[cc4.SMALL]


def vector(process=(), connection=()):
    v = np.zeros(OBS, np.int64)
    for slot in process:
        v[SMALL["process_flags"][slot]] = 1
    for slot in connection:
        v[SMALL["connection_flags"][slot]] = 1
    return v


class OneAgent:
    """One row of `AgentMemories`, read and driven as a single agent."""

    def __init__(self, layout=SMALL):
        self.rows = AgentMemories(layout)

    def observe(self, vector, found=(), escalations=()):
        """`found`: host slots where an Analyse that finished in the last step found an exploit's file,
        `escalations`: where it found an escalation's."""
        malware = np.zeros((1, 16), np.int8)
        malware[0, list(found)] = SHELL_FILE
        malware[0, list(escalations)] = ESCALATION_FILE
        self.rows.observe(vector[None], malware)

    def act(self, action, valid):
        self.rows.act(np.array([action]), np.array([valid]), np.array([True]))

    @property
    def busy(self):
        return bool(self.rows.busy[0])

    def features(self):
        return self.rows.features()[0]

    def reset(self):
        self.rows.reset()


def hosts(memory):
    return memory.features()[OBS + AGENT_FEATURES :].reshape(16, HOST_FEATURES)


def test_the_runtimes_own_copies_of_cc4_facts_equal_their_home():
    """A submission imports nothing of cage-sf, so the runtime keeps a few CC4 facts of its own: they must not drift."""
    assert cc4_memory.EPISODE_STEPS == cc4.EPISODE_STEPS
    assert (cc4_memory.SLOTS_PER_SUBNET, cc4_memory.SERVER_SLOTS) == (cc4.SLOTS_PER_SUBNET, cc4.SERVER_SLOTS)
    assert cc4_memory.COMMANDS == len(cc4.COMMANDS)
    assert cc4_networks.MESSAGE_BITS == cc4.MESSAGE_LENGTH
    assert cc4_networks.SOURCES == cc4.TRAFFIC_SOURCES


def test_layout_matches_the_observation_and_action_tables():
    """docs/cc4.md §4.1 and §3.4: agent 0's process flags at 28-43, connection flags at 44-59; agent 4's third
    subnet's at 119+27..; Restore of slot h at 33+h (small) and 97+h (large)."""
    assert SMALL["process_flags"] == list(range(28, 44)) and SMALL["connection_flags"] == list(range(44, 60))
    large = cc4.agent_layout(cc4.LARGE)
    assert large["process_flags"][32:] == list(range(146, 162)) and large["connection_flags"][-1] == 177
    assert SMALL["slot"][33 + 7] == 7 and large["slot"][97 + 40] == 40 and large["slot"][145] == -1
    assert cc4.COMMANDS[SMALL["command"][40]] == "Restore" and SMALL["durations"][40] == 5
    assert feature_size(SMALL) == 92 + AGENT_FEATURES + 16 * HOST_FEATURES


def test_flags_leave_a_decaying_trace_and_are_counted_until_a_restore():
    memory = OneAgent()
    memory.observe(vector(process=[3], connection=[5]))
    assert hosts(memory)[3, 0] == 1 and hosts(memory)[5, 1] == 1 and hosts(memory)[3, 2] == 0.25
    memory.act(SMALL["sleep"], True)
    memory.observe(vector())
    memory.act(SMALL["sleep"], True)
    memory.observe(vector(process=[3]))
    assert hosts(memory)[3, 0] == 1 and hosts(memory)[5, 1] == pytest.approx(TRACE_DECAY**2)
    assert hosts(memory)[3, 2] == 0.5  # two process flags seen on slot 3
    memory.act(66 + 3, True)  # DeployDecoy on slot 3 (2 steps)
    memory.observe(vector())
    memory.observe(vector())
    assert hosts(memory)[3, 4] == 0.25
    memory.act(33 + 3, True)  # Restore slot 3: counts and decoys there are gone, the restore leaves a trace
    memory.observe(vector())
    assert hosts(memory)[3, 2] == hosts(memory)[3, 4] == 0 and hosts(memory)[3, 5] == pytest.approx(TRACE_DECAY)
    assert hosts(memory)[5, 3] == 0.25  # other hosts keep theirs


def test_busy_for_the_action_duration_with_the_command_in_flight():
    memory = OneAgent()
    memory.observe(vector())
    memory.act(17, True)  # Remove slot 0: 3 steps
    seen = []
    for _ in range(3):
        memory.observe(vector())
        agent = memory.features()[OBS : OBS + AGENT_FEATURES]
        in_flight = cc4.COMMANDS[int(np.argmax(agent[3:]))] if agent[3:].any() else None
        seen.append((memory.busy, round(float(agent[0]), 3), round(float(agent[1]), 3), in_flight))
    assert seen == [(True, 1, 0.4, "Remove"), (True, 1, 0.2, "Remove"), (False, 0, 0, None)]
    memory.act(17, False)  # a masked action runs as a one-step Sleep
    memory.observe(vector())
    assert not memory.busy


def test_reset_forgets_the_episode():
    memory = OneAgent()
    memory.observe(vector(process=[1]))
    memory.act(33, True)
    memory.reset()
    memory.observe(vector())
    features = memory.features()
    assert not memory.busy and not features[OBS:].any()


def test_without_host_memory_only_the_vector_and_the_agent_features_remain():
    memory = OneAgent(cc4.agent_layout(cc4.SMALL, host_memory=False))
    memory.observe(vector(process=[2]))
    memory.act(33 + 2, True)
    memory.observe(vector())
    assert memory.busy and memory.features()[OBS] == 1 and not hosts(memory).any()


def test_analyse_findings_stay_until_an_own_restore_and_every_finished_analyse_fades():
    """Slot 4 analysed (2 steps) with red's files, slot 6 without; both read as analysed (the round the scripts
    keep), which fades; a Restore of slot 4 forgets its files."""
    memory = OneAgent()
    memory.observe(vector())
    memory.act(4, True)  # Analyse slot 4
    memory.observe(vector())
    assert hosts(memory)[4, 7] == hosts(memory)[4, 8] == 0  # still running
    memory.observe(vector(), found=[4])
    assert hosts(memory)[4, 7] == hosts(memory)[4, 8] == 1
    memory.act(6, True)  # Analyse slot 6: comes back clean
    memory.observe(vector())
    memory.observe(vector())
    assert hosts(memory)[6, 8] == 1 and hosts(memory)[6, 7] == 0 and hosts(memory)[4, 7] == 1
    memory.act(SMALL["sleep"], True)
    memory.observe(vector())
    assert hosts(memory)[6, 8] == pytest.approx(ANALYSED_DECAY)
    memory.act(33 + 4, True)  # Restore slot 4
    memory.observe(vector())
    assert hosts(memory)[4, 7] == 0
    memory.reset()
    memory.observe(vector())
    assert not hosts(memory)[:, 7:].any()


def test_an_escalation_found_stays_until_an_own_restore_and_a_remove_counts_until_the_next_process_flag():
    """Feature 9: an escalation's file found (Remove cannot clear it); 10: an own Remove since the host's last
    process flag (an exploit's file found after it is what the killed shell left)."""
    remove, restore = (cc4.action_index(cc4.SMALL, c) for c in ("Remove", "Restore"))
    memory = OneAgent()
    memory.observe(vector(process=[3]))
    memory.act(remove + 3, True)
    memory.observe(vector())
    assert hosts(memory)[3, 10] == 1 and not hosts(memory)[:, 9].any()
    memory.observe(vector(), escalations=[5])
    assert hosts(memory)[5, 9] == hosts(memory)[5, 7] == 1 and hosts(memory)[3, 9] == 0
    memory.observe(vector(process=[3]))  # red is back on slot 3
    assert hosts(memory)[3, 10] == 0
    memory.act(restore + 5, True)
    memory.observe(vector())
    assert hosts(memory)[5, 9] == hosts(memory)[5, 7] == 0


def test_malware_in_files_reads_cyborgs_dictionary_observation():
    """The shape of CybORG's raw observation after an Analyse (seen on CybORG CC4): the host's files with their
    density; red's carry 0.9. Slots follow the agent's subnets in the given order: servers 0-5, users 6-15."""
    subnets = ["admin_network_subnet", "office_network_subnet", "public_access_zone_subnet"]
    red_file = {"Path": "/tmp/", "File Name": "escalate.sh", "Density": 0.9}
    observation = {
        "success": True,
        "office_network_subnet_user_host_3": {"Files": [red_file]},
        "admin_network_subnet_server_host_2": {"Files": [{"File Name": "cmd.sh", "Density": 0.9, "Signed": False}]},
        "public_access_zone_subnet_user_host_0": {"Files": [{"File Name": "notes.txt", "Density": 0.1}]},
        "public_access_zone_subnet_server_host_1": {"Processes": []},
        "restricted_zone_a_subnet_user_host_1": {"Files": [red_file]},  # not this agent's
    }
    found = malware_in_files(observation, subnets)
    assert np.flatnonzero(found).tolist() == [2, 16 + 6 + 3]
    assert found[2] == SHELL_FILE and found[16 + 6 + 3] == ESCALATION_FILE
    assert not malware_in_files({"success": True}, subnets[:1]).any()
