"""What a CC4 blue agent's policy sees: its observation vector plus the memory that vector lacks.

CC4's flags are visible for exactly one step, nothing says whether the agent's own multi-step action is
still running (docs/cc4.md §4.1), and what Analyse finds (red's files: an exploit's cmd.sh, an escalation's
escalate.sh) is only in CybORG's dictionary observation, so each agent keeps a small per-episode memory that takes
those findings.
This one definition is used by training (`cage_sf.adapter`, one row per env of a vector of envs) and by the
exported submission (`cc4_agent.py`, which ships this file, one row per agent), so the policy sees the same
features in both.
numpy only: a submission imports nothing of cage-sf.

`layout` (built by `cage_sf.cc4.agent_layout`, stored in a submission's model.json) holds an agent type's
facts: `obs_size`, `durations` and `command` (command id) and `slot` (host slot or -1) of every action index,
`sleep`, `analyse`/`restore`/`remove`/`decoy` (command ids), and the observation indices of each host slot's
`process_flags` and `connection_flags`; `host_memory` False zeroes the per-host memory (an ablation).
"""

from __future__ import annotations

import numpy as np

COMMANDS = 8  # Analyse, Monitor, Remove, Restore, Sleep, AllowTrafficZone, BlockTrafficZone, DeployDecoy
AGENT_FEATURES = 3 + COMMANDS  # busy, steps remaining, episode progress, command in flight (one-hot)
HOST_FEATURES = 11  # see AgentMemories.features
# Networks read these features by position: bump this when one changes its meaning, order or count. A run's
# config.json and a submission's model.json record it; `check_version` refuses networks of another version.
MEMORY_VERSION = 3
TRACE_DECAY = 0.9  # a flag seen k steps ago reads 0.9**k (half-life ~6.6 steps)
ANALYSED_DECAY = 0.98  # an own Analyse k steps ago reads 0.98**k (half-life ~34 steps): red may be back since
MALWARE_DENSITY = 0.9  # Analyse lists every file; red's carry this density, and hosts start with none
SHELL_FILE, ESCALATION_FILE = 1, 2  # what an Analyse found on a host: red's files, the worst of them
ESCALATION_NAME = "escalate"  # escalate.sh: red made its session root there, which Remove cannot kill
COUNT_CAP = 4.0  # counts are read as min(count, cap) / cap
MAX_DURATION = 5.0  # Restore
EPISODE_STEPS = 500.0
SLOTS_PER_SUBNET, SERVER_SLOTS = 16, 6  # a subnet's host slots: server_host_0..5, then user_host_0..9


def check_version(recorded: int | None) -> None:
    """Refuse networks trained on another memory layout than this one (`recorded`: the version model.json or a
    run's config.json holds; None for those written before versions were recorded)."""
    if recorded != MEMORY_VERSION:
        trained_on = "from before memory versions" if recorded is None else f"version {recorded}"
        raise ValueError(
            f"trained on agent memory {trained_on}, but this code keeps version {MEMORY_VERSION} (the features "
            "differ): use the cage-sf it was trained with, or train it again"
        )


def malware_in_files(observation: dict, subnets: list[str]) -> np.ndarray:
    """[16 per subnet] int8: what CybORG's dictionary observation of one agent lists of red's files per host slot
    (subnets in the given order, slots as above; Analyse reports them): 0 none, SHELL_FILE only an exploit's
    (cmd.sh), ESCALATION_FILE an escalation's (escalate.sh)."""
    found = np.zeros(SLOTS_PER_SUBNET * len(subnets), dtype=np.int8)
    for hostname, facts in observation.items():
        files = facts.get("Files", []) if isinstance(facts, dict) else []
        red = [f for f in files if f.get("Density", 0) >= MALWARE_DENSITY]
        if not red:
            continue
        subnet, kind, _, number = hostname.rsplit("_", 3)  # e.g. office_network_subnet_user_host_3
        if subnet in subnets and kind in ("server", "user"):
            slot = SERVER_SLOTS * (kind == "user") + int(number)
            escalated = any(str(f.get("File Name", "")).startswith(ESCALATION_NAME) for f in red)
            found[SLOTS_PER_SUBNET * subnets.index(subnet) + slot] = ESCALATION_FILE if escalated else SHELL_FILE
    return found


def feature_size(layout: dict) -> int:
    return layout["obs_size"] + AGENT_FEATURES + HOST_FEATURES * len(layout["process_flags"])


def feature_index(layout: dict) -> dict[str, np.ndarray]:
    """Where each entity's inputs sit in `AgentMemories.features()` (for the entity model):
    host [slots, 2 + HOST_FEATURES]: the slot's process and connection flags, then its memory;
    subnet [subnets, 27]: the defended subnet's one-hot, blocked sources and comms policy;
    agent [1 + AGENT_FEATURES + 32]: the phase, the agent's own features, the messages it received."""
    obs_size, slots = layout["obs_size"], len(layout["process_flags"])
    flags = np.stack([layout["process_flags"], layout["connection_flags"]], axis=1)
    memory = obs_size + AGENT_FEATURES + HOST_FEATURES * np.arange(slots)[:, None] + np.arange(HOST_FEATURES)
    return {
        "host": np.concatenate([flags, memory], axis=1),
        "subnet": np.asarray(layout["subnet_facts"]),
        "agent": np.concatenate([[layout["phase"]], obs_size + np.arange(AGENT_FEATURES), layout["messages"]]),
    }


class AgentMemories:
    """The episode memories of `n` agents of one type (rows) that step together, as arrays: call `reset(rows)`
    when rows start an episode, then every step `observe(vectors)` and `act(actions, valid, acting)` with the
    actions the rows that are not `busy` submit."""

    def __init__(self, layout: dict, n: int = 1):
        self.durations = np.asarray(layout["durations"], np.int64)
        self.command = np.asarray(layout["command"], np.int64)
        self.slot = np.asarray(layout["slot"], np.int64)
        self.analyse, self.restore = layout["analyse"], layout["restore"]
        self.remove, self.decoy = layout["remove"], layout["decoy"]
        self.flag_index = np.stack([layout["process_flags"], layout["connection_flags"]], axis=1)  # [slots, 2]
        self.host_memory = float(layout["host_memory"])
        self.obs_size = layout["obs_size"]
        self.size = feature_size(layout)
        self.n = n
        slots = len(self.flag_index)
        self.step = np.full(n, -1, np.int64)
        self.free_at = np.zeros(n, np.int64)
        self.in_flight = np.full(n, -1, np.int64)  # command id of the last submitted action
        self.target = np.full(n, -1, np.int64)  # its host slot, -1 if none
        self.vectors = np.zeros((n, self.obs_size), np.float32)
        self.traces = np.zeros((n, slots, 2))  # process, connection flags: decaying
        self.counts = np.zeros((n, slots, 2))  # process, connection flags seen since the last own Restore
        self.decoys = np.zeros((n, slots))  # decoys placed since the last own Restore
        self.own = np.zeros((n, slots, 2))  # own Restore, Remove: decaying
        self.malware = np.zeros((n, slots))  # an own Analyse found red's files since the last own Restore
        self.escalation = np.zeros((n, slots))  # ... and among them an escalation's (Remove cannot clear it)
        self.removed = np.zeros((n, slots))  # an own Remove since the host's last process flag
        self.analysed = np.zeros((n, slots))  # an own Analyse finished: slowly decaying
        self.reset()

    def reset(self, rows=slice(None)) -> None:
        """Forget the episode of `rows` (index array, boolean mask or slice; all rows by default)."""
        self.step[rows] = -1
        self.free_at[rows] = 0
        self.in_flight[rows] = -1
        self.target[rows] = -1
        for state in (
            self.traces,
            self.counts,
            self.decoys,
            self.own,
            self.malware,
            self.escalation,
            self.removed,
            self.analysed,
        ):
            state[rows] = 0.0

    @property
    def busy(self) -> np.ndarray:
        """Rows whose last action is still running: CybORG drops anything they submit now."""
        return self.step < self.free_at

    def observe(self, vectors: np.ndarray, malware: np.ndarray | None = None) -> None:
        """Take this step's observation vectors, [n, obs_size] (the first ones right after reset), and the host
        slots where an Analyse that finished in the last step found red's files ([n, slots] `malware_in_files` codes,
        or bool: any red file; None: none)."""
        self.step += 1
        self.vectors[:] = vectors
        flags = self.vectors[:, self.flag_index]
        np.maximum(flags, self.traces * TRACE_DECAY, out=self.traces)
        self.counts += flags
        self.removed[flags[..., 0] > 0] = 0.0  # a new exploit's shell: red is back since the Remove
        self.own *= TRACE_DECAY
        self.analysed *= ANALYSED_DECAY
        codes = np.zeros(self.malware.shape, np.int8) if malware is None else np.asarray(malware, np.int8)
        rows = np.flatnonzero((self.step == self.free_at) & (self.in_flight == self.analyse) & (self.target >= 0))
        self.analysed[rows, self.target[rows]] = 1.0
        self.malware[codes > 0] = 1.0
        self.escalation[codes >= ESCALATION_FILE] = 1.0

    def act(self, actions: np.ndarray, valid: np.ndarray, acting: np.ndarray) -> None:
        """Rows in `acting` submit `actions` now; an action whose `valid` is False runs as a one-step Sleep."""
        rows = np.flatnonzero(acting)
        action, ok = np.asarray(actions)[rows], np.asarray(valid)[rows]
        self.free_at[rows] = self.step[rows] + np.where(ok, self.durations[action], 1)
        command = self.in_flight[rows] = np.where(ok, self.command[action], -1)
        slot = self.target[rows] = np.where(ok, self.slot[action], -1)
        on_host = slot >= 0
        restored = on_host & (command == self.restore)  # a Restore wipes the host: what we counted there is gone
        self.own[rows[restored], slot[restored], 0] = 1.0
        self.counts[rows[restored], slot[restored]] = 0.0
        self.decoys[rows[restored], slot[restored]] = 0.0
        for state in (self.malware, self.escalation, self.removed):
            state[rows[restored], slot[restored]] = 0.0
        removed = on_host & (command == self.remove)
        self.own[rows[removed], slot[removed], 1] = 1.0
        self.removed[rows[removed], slot[removed]] = 1.0
        decoyed = on_host & (command == self.decoy)
        self.decoys[rows[decoyed], slot[decoyed]] += 1.0

    def features(self) -> np.ndarray:
        """[n, size]: [observation vector | busy, steps remaining, progress, command in flight | 11 per host slot:
        process and connection flag traces, process and connection flags since the last Restore, decoys placed
        since then, own Restore and Remove traces, red's files found by an own Analyse since then, an own
        Analyse, whatever it found (decaying: which hosts are due for one), an escalation's file found since the
        last Restore, an own Remove since the last process flag]."""
        out = np.empty((self.n, self.size), np.float32)
        out[:, : self.obs_size] = self.vectors
        agent = out[:, self.obs_size : self.obs_size + AGENT_FEATURES]
        remaining = np.maximum(self.free_at - self.step, 0)
        agent[:, 0] = remaining > 0
        agent[:, 1] = remaining / MAX_DURATION
        agent[:, 2] = self.step / EPISODE_STEPS
        agent[:, 3:] = 0.0
        in_flight = np.flatnonzero((remaining > 0) & (self.in_flight >= 0))
        agent[in_flight, 3 + self.in_flight[in_flight]] = 1.0
        hosts = out[:, self.obs_size + AGENT_FEATURES :].reshape(self.n, -1, HOST_FEATURES)  # a view: out is whole
        hosts[..., 0:2] = self.traces
        hosts[..., 2:4] = np.minimum(self.counts, COUNT_CAP) / COUNT_CAP
        hosts[..., 4] = np.minimum(self.decoys, COUNT_CAP) / COUNT_CAP
        hosts[..., 5:7] = self.own
        hosts[..., 7] = self.malware
        hosts[..., 8] = self.analysed
        hosts[..., 9] = self.escalation
        hosts[..., 10] = self.removed
        hosts *= self.host_memory
        return out
