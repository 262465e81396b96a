"""Blue agents: action index spaces, labels, masks (docs/cc4.md §3.4), the busy rule (§3), action effects (§4.2)."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from cage_sf import cc4
from cage_sf.sim.red import RedTeam
from cage_sf.sim.state import P25, P80, P443, HostState
from cage_sf.sim.topology import (
    APACHE,
    BLUE_SUBNETS,
    HARAKA,
    MAX_SERVERS,
    NUM_SUBNETS,
    SLOTS_PER_SUBNET,
    SUBNET_NAMES,
    TOMCAT,
    VSFTPD,
    Topology,
)

COMMANDS = ("Analyse", "Monitor", "Remove", "Restore", "Sleep", "AllowTrafficZone", "BlockTrafficZone", "DeployDecoy")
ANALYSE, MONITOR, REMOVE, RESTORE, SLEEP, ALLOW, BLOCK, DECOY = range(len(COMMANDS))
DURATIONS = tuple(cc4.DURATION[c] for c in COMMANDS)


class BlueAction(NamedTuple):
    command: int
    host: int = -1  # target of Analyse/Remove/Restore/DeployDecoy
    dst: int = -1  # Allow/BlockTrafficZone: traffic into dst ...
    src: int = -1  # ... from src


SLEEP_ACTION = BlueAction(SLEEP)


@dataclass(frozen=True)
class ActionTable:
    """Static decoding of one agent's indices: command, host slot (subnet, slot) and traffic (dst, src)."""

    command: np.ndarray  # (n,) command code
    subnet: np.ndarray  # (n,) subnet of the host slot / traffic destination, -1 otherwise
    slot: np.ndarray  # (n,) host slot 0..15, -1 otherwise
    source: np.ndarray  # (n,) traffic source subnet, -1 otherwise


def action_table(agent: int) -> ActionTable:
    kind = cc4.agent_type(cc4.AGENTS[agent])
    subnets = BLUE_SUBNETS[agent]
    command, subnet, slot, source = [], [], [], []
    for name, count in cc4.command_layout(kind):
        code = COMMANDS.index(name)
        for i in range(count):
            command.append(code)
            if name in cc4.HOST_COMMANDS:
                subnet.append(subnets[i // SLOTS_PER_SUBNET])
                slot.append(i % SLOTS_PER_SUBNET)
                source.append(-1)
            elif code in (ALLOW, BLOCK):
                dst = subnets[i // (NUM_SUBNETS - 1)]
                subnet.append(dst)
                slot.append(-1)
                source.append([s for s in range(NUM_SUBNETS) if s != dst][i % (NUM_SUBNETS - 1)])
            else:
                subnet.append(-1)
                slot.append(-1)
                source.append(-1)
    return ActionTable(*(np.array(a, dtype=np.int64) for a in (command, subnet, slot, source)))


TABLES: tuple[ActionTable, ...] = tuple(action_table(i) for i in range(len(cc4.AGENTS)))


def slot_hostname(subnet: int, slot: int) -> str:
    kind, number = ("server", slot) if slot < MAX_SERVERS else ("user", slot - MAX_SERVERS)
    return f"{SUBNET_NAMES[subnet]}_{kind}_host_{number}"


def episode_targets(table: ActionTable, topo: Topology) -> tuple[np.ndarray, np.ndarray]:
    """(target host id per index or -1, action mask): host actions on absent hosts are masked Sleeps."""
    host_action = table.slot >= 0
    host = np.where(host_action, topo.slot_host[table.subnet, np.maximum(table.slot, 0)], -1)
    return host, ~host_action | (host >= 0)


def host_slots(agent: int, topo: Topology) -> np.ndarray:
    """(H,) the agent's observation slot of every host (its subnets in order, 16 slots each), -1 outside them."""
    slots = np.full(topo.num_hosts, -1, dtype=np.int64)
    for position, subnet in enumerate(BLUE_SUBNETS[agent]):
        present = topo.slot_host[subnet] >= 0
        slots[topo.slot_host[subnet][present]] = position * SLOTS_PER_SUBNET + np.flatnonzero(present)
    return slots


def labels(table: ActionTable, mask: np.ndarray, topo: Topology) -> list[str]:
    """The strings of CybORG's BlueFixedActionWrapper.action_labels."""
    out = []
    for i, code in enumerate(table.command):
        name = COMMANDS[code]
        if code in (ALLOW, BLOCK):
            dst, src = table.subnet[i], table.source[i]
            out.append(f"{name} {SUBNET_NAMES[dst]} ({topo.cidrs[dst]}) <- {SUBNET_NAMES[src]} ({topo.cidrs[src]})")
        elif table.slot[i] >= 0:
            label = f"{name} {slot_hostname(table.subnet[i], table.slot[i])}"
            out.append(label if mask[i] else f"[Invalid] {label}")
        else:
            out.append(name)
    return out


def deploy_decoy(hosts: HostState, host: int, rng: np.random.Generator) -> None:
    """Add one decoy, uniformly among the factories whose port is free (Vsftpd always fits: it checks port 21)."""
    ports = hosts.ports(host)
    factories = [f for f, port in ((APACHE, P80), (TOMCAT, P443), (HARAKA, P25)) if not ports & port] + [VSFTPD]
    decoy = factories[int(rng.random() * len(factories))]
    hosts.active[host, decoy] = True
    hosts.reliability[host, decoy] = 100
    hosts.new_pid(host)  # its process takes the next PID, which a later red shell then cannot re-use
    if decoy == APACHE:
        hosts.apache_decoy[host] = True
    elif decoy == VSFTPD:
        hosts.vsftpd_decoys[host] += 1


def execute(action: BlueAction, hosts: HostState, red: RedTeam, topo: Topology, rng: np.random.Generator) -> None:
    """Apply one blue action that finished this step (Analyse, Monitor and Sleep change nothing)."""
    if action.command == REMOVE:
        red.remove(action.host, hosts)
    elif action.command == RESTORE:
        red.restore(action.host)
        hosts.restore(topo, action.host)
    elif action.command == DECOY:
        deploy_decoy(hosts, action.host, rng)
    elif action.command == BLOCK:
        hosts.blocks[action.dst, action.src] = True
    elif action.command == ALLOW:
        hosts.blocks[action.dst, action.src] = False


class BlueTeam:
    """Per-episode index decoding plus each agent's action in progress."""

    def __init__(self, topo: Topology):
        targets = [episode_targets(table, topo) for table in TABLES]
        self.masks = [mask for _, mask in targets]
        for mask in self.masks:
            mask.setflags(write=False)  # handed out in every info dict
        self._actions = [
            [BlueAction(int(t.command[i]), int(host[i]), int(t.subnet[i]), int(t.source[i])) for i in range(len(mask))]
            for t, (host, mask) in zip(TABLES, targets, strict=True)
        ]
        self._pending: list[BlueAction | None] = [None] * len(TABLES)
        self._remaining = [0] * len(TABLES)

    def decode(self, agent: int, action: int) -> BlueAction:
        """The action behind an index; masked indices are Sleep. Bad indices fail like CybORG's list lookup."""
        actions = self._actions[agent]
        index = operator.index(action)  # TypeError for floats
        if not -len(actions) <= index < len(actions):
            raise IndexError(f"{cc4.AGENTS[agent]}: action index {index} is outside Discrete({len(actions)})")
        index %= len(actions)  # negative indices wrap, as in a Python list
        return actions[index] if self.masks[agent][index] else SLEEP_ACTION

    def intake(self, submitted: list[BlueAction]) -> list[tuple[int, BlueAction]]:
        """Busy rule: a submission while an action is in progress is dropped. Returns the actions finishing now,
        each with its agent's index."""
        due = []
        for i, action in enumerate(submitted):
            if self._pending[i] is None:
                self._pending[i], self._remaining[i] = action, DURATIONS[action.command]
            self._remaining[i] -= 1
            if self._remaining[i] < 1:
                due.append((i, self._pending[i]))
                self._pending[i] = None
        return due

    def busy(self) -> list[bool]:
        return [pending is not None for pending in self._pending]
