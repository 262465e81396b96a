"""What a CC4 blue agent's policy sees: its observation vector plus the memory that vector lacks.

CC4's flags are visible for exactly one step and nothing says whether the agent's own multi-step action is
still running (CC4_SPEC §4.1), so each agent keeps a small per-episode memory. This one definition is used
by training (`cage_sf.adapter`) and by the exported submission (`cc4_agent.py`, which ships this file), so
the policy sees the same features in both. numpy only: a submission imports nothing of cage-sf.

`layout` (built by `cage_sf.cc4.agent_layout`, stored in a submission's model.json) holds an agent type's
facts: `obs_size`, `durations` and `command` (command id) and `slot` (host slot or -1) of every action index,
`sleep`, `restore`/`remove`/`decoy` (command ids), and the observation indices of each host slot's
`process_flags` and `connection_flags`; `host_memory` False zeroes the per-host memory (an ablation).
"""

from __future__ import annotations

import numpy as np

COMMANDS = 8  # Analyse, Monitor, Remove, Restore, Sleep, AllowTrafficZone, BlockTrafficZone, DeployDecoy
AGENT_FEATURES = 3 + COMMANDS  # busy, steps remaining, episode progress, command in flight (one-hot)
HOST_FEATURES = 7  # see AgentMemory.features
TRACE_DECAY = 0.9  # a flag seen k steps ago reads 0.9**k (half-life ~6.6 steps)
COUNT_CAP = 4.0  # counts are read as min(count, cap) / cap
MAX_DURATION = 5.0  # Restore
EPISODE_STEPS = 500.0


def feature_size(layout: dict) -> int:
    return layout["obs_size"] + AGENT_FEATURES + HOST_FEATURES * len(layout["process_flags"])


class AgentMemory:
    """One blue agent's memory over an episode: call `reset()`, then every step `observe(vector)` and, when
    the agent is not `busy`, `act(action, valid)` with the action it submits."""

    def __init__(self, layout: dict):
        self.durations = np.asarray(layout["durations"], np.int64)
        self.command = np.asarray(layout["command"], np.int64)
        self.slot = np.asarray(layout["slot"], np.int64)
        self.restore, self.remove, self.decoy = layout["restore"], layout["remove"], layout["decoy"]
        self.process_index = np.asarray(layout["process_flags"], np.int64)
        self.connection_index = np.asarray(layout["connection_flags"], np.int64)
        self.host_memory = layout["host_memory"]
        self.size = feature_size(layout)
        self.reset()

    def reset(self) -> None:
        slots = len(self.process_index)
        self.step = -1
        self.free_at = 0
        self.in_flight = -1  # command id of the last submitted action
        self.vector = None
        self.process_trace, self.connection_trace = np.zeros(slots), np.zeros(slots)
        self.process_count, self.connection_count = np.zeros(slots), np.zeros(slots)
        self.decoys, self.restore_trace, self.remove_trace = np.zeros(slots), np.zeros(slots), np.zeros(slots)

    @property
    def busy(self) -> bool:
        """The agent's last action is still running: CybORG drops anything it submits now."""
        return self.step < self.free_at

    def observe(self, vector) -> None:
        """Take this step's observation vector (the first one right after reset)."""
        self.step += 1
        self.vector = np.asarray(vector, np.float32)
        process, connection = self.vector[self.process_index], self.vector[self.connection_index]
        self.process_trace = np.maximum(process, self.process_trace * TRACE_DECAY)
        self.connection_trace = np.maximum(connection, self.connection_trace * TRACE_DECAY)
        self.process_count += process
        self.connection_count += connection
        self.restore_trace *= TRACE_DECAY
        self.remove_trace *= TRACE_DECAY

    def act(self, action: int, valid: bool) -> None:
        """The agent submits `action` now; a masked action runs as a one-step Sleep."""
        self.free_at = self.step + (int(self.durations[action]) if valid else 1)
        self.in_flight = int(self.command[action]) if valid else -1
        slot = int(self.slot[action]) if valid else -1
        if slot < 0:
            return
        command = self.in_flight
        if command == self.restore:  # a Restore wipes the host: what we counted there is gone
            self.restore_trace[slot] = 1.0
            self.process_count[slot] = self.connection_count[slot] = self.decoys[slot] = 0.0
        elif command == self.remove:
            self.remove_trace[slot] = 1.0
        elif command == self.decoy:
            self.decoys[slot] += 1.0

    def features(self) -> np.ndarray:
        """[observation vector | busy, steps remaining, progress, command in flight | 7 per host slot: process
        and connection flag traces, process and connection flags since the last Restore, decoys placed since
        then, own Restore and Remove traces]."""
        remaining = max(self.free_at - self.step, 0)
        agent = np.zeros(AGENT_FEATURES, np.float32)
        agent[:3] = (remaining > 0, remaining / MAX_DURATION, self.step / EPISODE_STEPS)
        if remaining > 0 and self.in_flight >= 0:
            agent[3 + self.in_flight] = 1.0
        hosts = np.stack(
            [
                self.process_trace,
                self.connection_trace,
                np.minimum(self.process_count, COUNT_CAP) / COUNT_CAP,
                np.minimum(self.connection_count, COUNT_CAP) / COUNT_CAP,
                np.minimum(self.decoys, COUNT_CAP) / COUNT_CAP,
                self.restore_trace,
                self.remove_trace,
            ],
            axis=1,
        ).astype(np.float32)
        return np.concatenate([self.vector, agent, hosts.ravel() * self.host_memory])
