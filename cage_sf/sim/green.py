"""Green users, vectorised over all green agents: one per user host, acting every step (docs/cc4.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cage_sf.sim.state import HostState
from cage_sf.sim.topology import ADM, CON, NUM_SUBNETS, OFF, OZA, OZB, PAZ, RZA, RZB, Topology

# Table 2.1: destination subnets a green may pick servers from, per phase (always including its own).
_HQ = (PAZ, ADM, OFF)
ALLOWED_DESTINATIONS: tuple[dict[int, tuple[int, ...]], ...] = (
    {
        RZA: (*_HQ, CON, OZA, RZB),
        OZA: (RZA,),
        RZB: (*_HQ, CON, RZA, OZB),
        OZB: (RZB,),
        CON: (*_HQ, RZA, RZB),
    },
    {RZA: _HQ, OZA: (), RZB: (*_HQ, CON, OZB), OZB: (RZB,), CON: (*_HQ, RZB)},
    {RZA: (*_HQ, CON, OZA), OZA: (RZA,), RZB: _HQ, OZB: (), CON: (*_HQ, RZA)},
)
_HQ_DESTINATIONS = (CON, RZA, RZB)  # PAZ, ADM and OFF: the same in every phase
ACCESS_FALSE_POSITIVE = 0.01  # N5
LOCAL_FALSE_POSITIVE = 0.01  # P3
PHISHING = 0.01


@dataclass
class GreenOutcome:
    """What the greens did this step that matters to rewards and red."""

    local_work_failed: np.ndarray  # (G,) bool
    access_failed: np.ndarray  # (G,) bool
    phished_hosts: np.ndarray  # host ids where a green's successful LocalWork rolled a phishing attempt


class Greens:
    """Per-episode green tables: each green's host and, per phase, the flat list of servers it may access."""

    def __init__(self, topo: Topology):
        self.host = np.flatnonzero(topo.is_user)
        self.subnet = topo.subnet[self.host]
        self._subnet_of = topo.subnet
        servers = [hosts[~topo.is_user[hosts]] for hosts in topo.subnet_hosts]
        self._destinations = []  # per phase: (flat server ids, start per green, count per green)
        for phase in range(3):
            per_subnet = [np.zeros(0, dtype=np.int64)] * NUM_SUBNETS
            for subnet in range(NUM_SUBNETS):
                if subnet in _HQ:
                    others = _HQ_DESTINATIONS
                else:
                    others = ALLOWED_DESTINATIONS[phase].get(subnet, ())
                per_subnet[subnet] = np.concatenate([servers[s] for s in (subnet, *others)])
            lengths = np.array([len(p) for p in per_subnet])
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            self._destinations.append((np.concatenate(per_subnet), starts[self.subnet], lengths[self.subnet]))

    def step(self, hosts: HostState, rng: np.random.Generator, phase: int, any_block: bool) -> GreenOutcome:
        """Every green picks Access/LocalWork/Sleep uniformly; executes it; sets the P3/N4/N5 flags."""
        count = len(self.host)
        u_choice, u_pick, u_roll, u_fp, u_phish = rng.random((5, count))
        choice = (u_choice * 3).astype(np.int64)  # 0 GreenAccessService, 1 GreenLocalWork, 2 Sleep

        # LocalWork: a uniformly picked running service fails with probability (100 - reliability) %.
        local = choice == 1
        active = hosts.active[self.host]
        pick_rank = (u_pick * active.sum(axis=1)).astype(np.int64)
        picked = (active.cumsum(axis=1) > pick_rank[:, None]).argmax(axis=1)
        reliability = hosts.reliability[self.host, picked]
        local_failed = local & ((u_roll * 100).astype(np.int64) >= reliability)
        local_ok = local & ~local_failed
        hosts.proc_flag[self.host[local_ok & (u_fp < LOCAL_FALSE_POSITIVE)]] = True
        phished = self.host[local_ok & (u_phish < PHISHING)]

        # AccessService: a random allowed server; only a block between the two subnets makes it fail.
        access = choice == 0
        flat, starts, lengths = self._destinations[phase]
        destination = flat[starts + (u_pick * lengths).astype(np.int64)]
        access_failed = np.zeros(count, dtype=bool)
        if any_block:
            symmetric = hosts.blocks | hosts.blocks.T
            access_failed = access & symmetric[self.subnet, self._subnet_of[destination]]
            hosts.conn_flag[destination[access_failed]] = True
        access_fp = access & ~access_failed & (u_roll < ACCESS_FALSE_POSITIVE)
        hosts.conn_flag[destination[access_fp]] = True
        return GreenOutcome(local_failed, access_failed, phished)
