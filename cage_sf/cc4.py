"""CAGE Challenge 4 facts shared by every backend and the adapter (docs/cc4.md §3.4, §4.1, §4.2).

Two agent types: "small" (blue_agent_0..3, one subnet) and "large" (blue_agent_4, three subnets).
"""

from __future__ import annotations

import numpy as np

AGENTS: tuple[str, ...] = tuple(f"blue_agent_{i}" for i in range(5))
SMALL, LARGE = 0, 1
OBS_SIZE = (92, 210)  # by agent type
NUM_ACTIONS = (82, 242)  # by agent type
HOST_SLOTS = (16, 48)  # host-targeted action slots by agent type
SUBNETS = (1, 3)  # defended subnets by agent type
MESSAGE_LENGTH = 8
TRAFFIC_SOURCES = 8  # Allow/BlockTrafficZone slots per defended subnet: the other eight subnets
PHASE_INDEX = 0  # observation element holding the mission phase (0, 1, 2)
SUBNET_BLOCK = 59  # observation elements per defended subnet, after the phase (docs/cc4.md §4.1)
SUBNET_FACTS = 27  # a subnet block's first elements: its one-hot, blocked sources, comms policy (9 each)
SUBNET_ONEHOT, BLOCKED_SOURCES, COMMS_POLICY = 0, 9, 18  # offsets of those three inside a subnet block
PROCESS_FLAGS, CONNECTION_FLAGS = 27, 43  # offsets of the 16 per-host flags inside a subnet block
SLOTS_PER_SUBNET, SERVER_SLOTS = 16, 6  # a subnet's host slots: server_host_0..5, then user_host_0..9
EPISODE_STEPS = 500

# Blue action durations in env steps (docs/cc4.md §4.2).
DURATION = {
    "Analyse": 2,
    "Monitor": 1,
    "Remove": 3,
    "Restore": 5,
    "Sleep": 1,
    "AllowTrafficZone": 1,
    "BlockTrafficZone": 1,
    "DeployDecoy": 2,
}
HOST_COMMANDS = frozenset({"Analyse", "Remove", "Restore", "DeployDecoy"})


def agent_type(agent: str) -> int:
    return LARGE if agent == AGENTS[4] else SMALL


def command_layout(kind: int) -> list[tuple[str, int]]:
    """(command, count) blocks in action-index order: Analyse, Monitor, Remove, Restore, Sleep, Allow, Block, Decoy."""
    hosts, traffic = HOST_SLOTS[kind], TRAFFIC_SOURCES * SUBNETS[kind]
    return [
        ("Analyse", hosts),
        ("Monitor", 1),
        ("Remove", hosts),
        ("Restore", hosts),
        ("Sleep", 1),
        ("AllowTrafficZone", traffic),
        ("BlockTrafficZone", traffic),
        ("DeployDecoy", hosts),
    ]


def action_commands(kind: int) -> list[str]:
    """The command name of every action index of an agent type."""
    return [command for command, count in command_layout(kind) for _ in range(count)]


def sleep_action(kind: int) -> int:
    return action_commands(kind).index("Sleep")


def action_index(kind: int, command: str, slot: int = 0) -> int:
    """Index of `command` on host slot (or traffic slot) `slot` for an agent type."""
    return action_commands(kind).index(command) + slot


def action_durations(kind: int) -> np.ndarray:
    return np.array([DURATION[c] for c in action_commands(kind)], dtype=np.int64)


def restore_actions(kind: int) -> np.ndarray:
    return np.array([c == "Restore" for c in action_commands(kind)])


COMMANDS: tuple[str, ...] = tuple(command for command, _ in command_layout(SMALL))


def subnet_block_start(block: int) -> int:
    """Observation index where an agent's `block`-th defended subnet's elements start (after the phase)."""
    return PHASE_INDEX + 1 + block * SUBNET_BLOCK


def host_flag_indices(kind: int, offset: int) -> list[int]:
    """Observation indices of one kind of per-host flag, in host-slot order (= host-action order)."""
    return [subnet_block_start(b) + offset + h for b in range(SUBNETS[kind]) for h in range(SLOTS_PER_SUBNET)]


def message_indices(kind: int) -> list[int]:
    """Observation indices of the messages an agent receives from the other four (the vector's last elements)."""
    return list(range(OBS_SIZE[kind] - (len(AGENTS) - 1) * MESSAGE_LENGTH, OBS_SIZE[kind]))


def agent_layout(kind: int, host_memory: bool = True) -> dict:
    """The facts an agent's memory and actor network need (`agent/`), as plain JSON-able values."""
    slots = []
    for command, count in command_layout(kind):
        slots += list(range(count)) if command in HOST_COMMANDS else [-1] * count
    return {
        "obs_size": OBS_SIZE[kind],
        "durations": action_durations(kind).tolist(),
        "command": [COMMANDS.index(c) for c in action_commands(kind)],
        "slot": slots,
        "commands": list(COMMANDS),
        "sleep": sleep_action(kind),
        "analyse": COMMANDS.index("Analyse"),
        "restore": COMMANDS.index("Restore"),
        "remove": COMMANDS.index("Remove"),
        "decoy": COMMANDS.index("DeployDecoy"),
        "process_flags": host_flag_indices(kind, PROCESS_FLAGS),
        "connection_flags": host_flag_indices(kind, CONNECTION_FLAGS),
        "host_server": [int(h % SLOTS_PER_SUBNET < SERVER_SLOTS) for h in range(HOST_SLOTS[kind])],
        "subnet_facts": [
            list(range(subnet_block_start(b), subnet_block_start(b) + SUBNET_FACTS)) for b in range(SUBNETS[kind])
        ],
        "phase": PHASE_INDEX,
        "messages": message_indices(kind),
        "host_memory": host_memory,
    }
