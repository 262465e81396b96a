"""Blue observation vectors (docs/cc4.md §4.1) built by one gather per agent from a per-step source buffer."""

from __future__ import annotations

import itertools

import numpy as np

from cage_sf import cc4
from cage_sf.sim.topology import ADM, BLUE_SUBNETS, CON, INT, NUM_SUBNETS, OFF, OZA, OZB, PAZ, RZA, RZB, Topology


def comms_policy() -> np.ndarray:
    """(phase, s, j) = 1 iff the wrapper's policy graph has no edge s-j (Table 2.2; the diagonal is always 1)."""
    core = (INT, ADM, OFF, PAZ, CON, RZA, RZB)
    edges = {frozenset(e) for e in itertools.combinations(core, 2)} | {frozenset((RZA, OZA)), frozenset((RZB, OZB))}
    removed = (
        set(),
        {frozenset((RZA, x)) for x in (OZA, CON, RZB, INT)},
        {frozenset((RZB, x)) for x in (OZB, CON, RZA, INT)},
    )
    policy = np.ones((3, NUM_SUBNETS, NUM_SUBNETS), dtype=np.int64)
    for phase in range(3):
        for edge in edges - removed[phase]:
            a, b = tuple(edge)
            policy[phase, a, b] = policy[phase, b, a] = 0
    return policy


COMMS = comms_policy()
_M = cc4.MESSAGE_LENGTH


class Observer:
    """Per-episode gather indices: obs[agent] = buffer[index[agent]] with the buffer refreshed every step."""

    def __init__(self, topo: Topology):
        num_hosts = topo.num_hosts
        self._phase, self._zero, self._one = 0, 1, 2
        self._blocks = 3
        self._comms = self._blocks + NUM_SUBNETS * NUM_SUBNETS
        self._proc = self._comms + NUM_SUBNETS * NUM_SUBNETS
        self._conn = self._proc + num_hosts + 1  # one extra, always 0, for absent host slots
        self._messages = self._conn + num_hosts + 1
        self._num_hosts = num_hosts
        self.buffer = np.zeros(self._messages + len(cc4.AGENTS) * _M, dtype=np.int64)
        self.buffer[self._one] = 1
        self.index = [self._agent_index(agent, topo) for agent in range(len(cc4.AGENTS))]

    def _agent_index(self, agent: int, topo: Topology) -> np.ndarray:
        parts = [[self._phase]]
        for s in BLUE_SUBNETS[agent]:
            parts.append([self._one if j == s else self._zero for j in range(NUM_SUBNETS)])
            parts.append([self._blocks + s * NUM_SUBNETS + j for j in range(NUM_SUBNETS)])
            parts.append([self._comms + s * NUM_SUBNETS + j for j in range(NUM_SUBNETS)])
            hosts = np.where(topo.slot_host[s] >= 0, topo.slot_host[s], self._num_hosts)
            parts.append((self._proc + hosts).tolist())
            parts.append((self._conn + hosts).tolist())
        for sender in range(len(cc4.AGENTS)):
            if sender != agent:
                parts.append(list(range(self._messages + sender * _M, self._messages + (sender + 1) * _M)))
        index = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
        self._check_layout(index, cc4.agent_type(cc4.AGENTS[agent]))
        return index

    def _check_layout(self, index: np.ndarray, kind: int) -> None:
        """The vector this gather builds has the layout `cc4` defines (its one home), element group by group."""
        assert len(index) == cc4.OBS_SIZE[kind]
        assert index[cc4.PHASE_INDEX] == self._phase
        for block in range(cc4.SUBNETS[kind]):
            start = cc4.subnet_block_start(block)
            onehot = index[start + cc4.SUBNET_ONEHOT : start + cc4.SUBNET_ONEHOT + NUM_SUBNETS]
            assert set(onehot.tolist()) == {self._zero, self._one}
            blocked = index[start + cc4.BLOCKED_SOURCES : start + cc4.BLOCKED_SOURCES + NUM_SUBNETS]
            assert ((blocked >= self._blocks) & (blocked < self._comms)).all()
            comms = index[start + cc4.COMMS_POLICY : start + cc4.COMMS_POLICY + NUM_SUBNETS]
            assert ((comms >= self._comms) & (comms < self._proc)).all()
        for offset, first, end in (
            (cc4.PROCESS_FLAGS, self._proc, self._conn),
            (cc4.CONNECTION_FLAGS, self._conn, self._messages),
        ):
            flags = index[cc4.host_flag_indices(kind, offset)]
            assert ((flags >= first) & (flags < end)).all()
        assert (index[cc4.message_indices(kind)] >= self._messages).all()

    def observe(
        self, phase: int, blocks: np.ndarray, proc: np.ndarray, conn: np.ndarray, messages: np.ndarray
    ) -> list[np.ndarray]:
        """Vectors for all five agents; `messages` is the (5, 8) 0/1 matrix sent this step."""
        buffer, n = self.buffer, self._num_hosts
        buffer[self._phase] = phase
        buffer[self._blocks : self._comms] = blocks.ravel()
        buffer[self._comms : self._proc] = COMMS[phase].ravel()
        buffer[self._proc : self._proc + n] = proc
        buffer[self._conn : self._conn + n] = conn
        buffer[self._messages :] = messages.ravel()
        return [buffer[index] for index in self.index]
