"""The CC4 simulator behind `BlueEnterpriseWrapper`'s public API: the step pipeline of docs/cc4.md §3."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from cage_sf import cc4
from cage_sf.agent.cc4_memory import ESCALATION_FILE, SHELL_FILE
from cage_sf.sim import blue
from cage_sf.sim.green import Greens
from cage_sf.sim.observation import Observer
from cage_sf.sim.red import IMP, RedTeam
from cage_sf.sim.rewards import ASF, LWF, RESTORE_COST, RIA, phase_of
from cage_sf.sim.state import HostState
from cage_sf.sim.topology import NUM_SUBNETS, Topology, draw_topology

_NUM_AGENTS = len(cc4.AGENTS)
_AGENT_INDEX = {agent: i for i, agent in enumerate(cc4.AGENTS)}
PRIVILEGED_STATE_SIZE = NUM_SUBNETS * cc4.SLOTS_PER_SUBNET * 3 + NUM_SUBNETS**2 + 1  # `CC4Sim.privileged_state`


@dataclass
class RewardTerms:
    """The team reward of the last step split by source (docs/cc4.md §7); they sum to the reward."""

    local_work: float = 0.0
    access: float = 0.0
    impact: float = 0.0
    restore_cost: float = 0.0


class CC4Sim:
    """Five blue agents against FiniteStateRedAgents and EnterpriseGreenAgents, seeded by one numpy Generator."""

    def __init__(self, seed: int | None = None, steps: int = cc4.EPISODE_STEPS):
        self._steps = steps
        self._rng = np.random.default_rng(seed)
        self.possible_agents = list(cc4.AGENTS)
        self._action_spaces = {a: spaces.Discrete(cc4.NUM_ACTIONS[cc4.agent_type(a)]) for a in cc4.AGENTS}
        self._observation_spaces = {
            a: spaces.MultiDiscrete([3] + [2] * (cc4.OBS_SIZE[cc4.agent_type(a)] - 1)) for a in cc4.AGENTS
        }
        self._new_episode()  # like CybORG, whose constructor already draws one scenario

    # ----------------------------------------------------------------------------------- public API
    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._new_episode()
        silent = np.zeros(self.topology.num_hosts, dtype=bool)
        no_messages = np.zeros((_NUM_AGENTS, cc4.MESSAGE_LENGTH), dtype=np.int64)
        vectors = self._observer.observe(0, self._hosts.blocks, silent, silent, no_messages)
        return dict(zip(cc4.AGENTS, vectors, strict=True)), self._infos()

    def step(
        self, actions: dict[str, int] | None = None, messages: dict[str, np.ndarray] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict]]:
        phase = phase_of(self._t, self._steps)
        sent = self._messages(messages)
        submitted = self._decode(actions or {})
        # The Restore cost is charged on submission, even when the busy rule then drops it [QUIRK].
        restores = sum(action.command == blue.RESTORE for action in submitted)
        hosts, rng, topo = self._hosts, self._rng, self.topology
        hosts.proc_flag[:] = False
        hosts.conn_flag[:] = False

        blue_due = self._blue.intake(submitted)
        red_due = self._red.intake(topo, rng)
        for analysis in self._analysis:
            analysis[:] = False
        # Blocks/Allows have priority 1; every other action follows in blue, green, red order.
        for agent, action in sorted(blue_due, key=lambda due: due[1].command not in (blue.ALLOW, blue.BLOCK)):
            if action.command == blue.ANALYSE:  # it reports red's files on the host (density 0.9)
                found = ESCALATION_FILE if hosts.escalation[action.host] else SHELL_FILE * hosts.malware[action.host]
                self._analysis[agent][self._host_slots[agent][action.host]] = found
            blue.execute(action, hosts, self._red, topo, rng)
        green = self._greens.step(hosts, rng, phase, bool(hosts.blocks.any()))
        for host in green.phished_hosts:
            self._red.phish(int(host), topo, hosts)
        impacts = []
        self.red_actions = []
        for agent, action, runnable in red_due:
            success = self._red.execute(agent, action, topo, hosts, rng) if runnable else None
            self.red_actions.append((action.kind, success))
            if action.kind == IMP:  # counted even when dropped or failed [BUG], if red still holds a session
                impacts.append((agent, action.host))
        self._red.end_of_step(rng)

        self._t += 1
        done = self._t >= self._steps - 1
        impact = sum(RIA[phase, topo.subnet[host]] for agent, host in impacts if agent.sessions)
        self.reward_terms = RewardTerms(
            local_work=float(self._green_penalty[0][phase] @ green.local_work_failed),
            access=float(self._green_penalty[1][phase] @ green.access_failed),
            impact=float(impact),
            restore_cost=RESTORE_COST * restores,
        )
        reward = (
            self.reward_terms.local_work
            + self.reward_terms.access
            + self.reward_terms.impact
            + self.reward_terms.restore_cost
        )
        if done:
            self.agents = []
        vectors = self._observer.observe(phase, hosts.blocks, hosts.proc_flag, hosts.conn_flag, sent)
        observations = dict(zip(cc4.AGENTS, vectors, strict=True))
        flags = dict.fromkeys(cc4.AGENTS, done)
        return observations, dict.fromkeys(cc4.AGENTS, reward), flags, dict(flags), self._infos()

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_spaces[agent]

    def observation_space(self, agent: str) -> spaces.MultiDiscrete:
        return self._observation_spaces[agent]

    def action_labels(self, agent: str) -> list[str]:
        i = _AGENT_INDEX[agent]
        return blue.labels(blue.TABLES[i], self._blue.masks[i], self.topology)

    def action_mask(self, agent: str) -> np.ndarray:
        return self._blue.masks[_AGENT_INDEX[agent]].copy()

    def analysis(self, agent: str) -> np.ndarray:
        """What the agent's Analyse that finished in the last step found of red's files per host slot, as
        `malware_in_files` codes (CybORG puts them in the dictionary observation, which the vector lacks)."""
        return self._analysis[_AGENT_INDEX[agent]].copy()

    def busy_agents(self) -> set[str]:
        return {agent for agent, busy in zip(cc4.AGENTS, self._blue.busy(), strict=True) if busy}

    def privileged_state(self) -> np.ndarray:
        """What blue cannot see, for a critic or an oracle (`PRIVILEGED_STATE_SIZE` floats in [0, 1]): per subnet
        and host slot (9 x 16, the observation's slot order) red's privilege (0.5 user, 1 root), a decoy, red's
        files; the 9 x 9 blocks (blocks[dst, src]); the episode's elapsed fraction."""
        topo, hosts = self.topology, self._hosts
        per_host = np.zeros((topo.num_hosts, 3), np.float32)
        sessions = [session for agent in self._red.agents for session in agent.sessions.values()]
        per_host[[s.host for s in sessions if not s.root], 0] = 0.5
        per_host[[s.host for s in sessions if s.root], 0] = 1.0  # after the users': a root session wins
        per_host[:, 1] = hosts.decoys()
        per_host[:, 2] = hosts.malware
        slots = np.zeros((*topo.slot_host.shape, 3), np.float32)
        present = topo.slot_host >= 0
        slots[present] = per_host[topo.slot_host[present]]
        return np.concatenate([slots.ravel(), hosts.blocks.ravel(), [self._t / self._steps]]).astype(np.float32)

    @property
    def step_count(self) -> int:
        return self._t

    @property
    def red(self) -> RedTeam:
        """The red agents (sessions and FSM memory): for diagnostics and tests."""
        return self._red

    @property
    def hosts(self) -> HostState:
        """Services, decoys, blocks and this step's event flags: for diagnostics and tests."""
        return self._hosts

    # ----------------------------------------------------------------------------------- internals
    def _new_episode(self) -> None:
        self.topology: Topology = draw_topology(self._rng)
        self._hosts = HostState.initial(self.topology, pid_rng=self._rng.spawn(1)[0])
        self._greens = Greens(self.topology)
        self._red = RedTeam(self.topology, self._hosts, self._rng)
        self._observer = Observer(self.topology)
        self._blue = blue.BlueTeam(self.topology)
        self._host_slots = [blue.host_slots(i, self.topology) for i in range(_NUM_AGENTS)]
        self._analysis = [np.zeros(cc4.HOST_SLOTS[cc4.agent_type(a)], dtype=np.int8) for a in cc4.AGENTS]
        self._green_penalty = (LWF[:, self._greens.subnet], ASF[:, self._greens.subnet])
        self._t = 0
        self.reward_terms = RewardTerms()
        # (kind, success) of the red actions due in the last step, success None if dropped unexecuted: diagnostics
        self.red_actions: list[tuple[int, bool | None]] = []
        self.agents = list(cc4.AGENTS)

    def _infos(self) -> dict[str, dict]:
        return {agent: {"action_mask": mask} for agent, mask in zip(cc4.AGENTS, self._blue.masks, strict=True)}

    def _decode(self, actions: dict[str, int]) -> list[blue.BlueAction]:
        """One action per blue agent (Sleep when absent), in agent order."""
        submitted = [blue.SLEEP_ACTION] * _NUM_AGENTS
        for agent, action in actions.items():
            i = _AGENT_INDEX[agent]  # KeyError for a non-blue agent, as in CybORG
            submitted[i] = self._blue.decode(i, action)
        return submitted

    def _messages(self, messages: dict[str, np.ndarray] | None) -> np.ndarray:
        sent = np.zeros((_NUM_AGENTS, cc4.MESSAGE_LENGTH), dtype=np.int64)
        for agent, message in (messages or {}).items():
            if agent not in _AGENT_INDEX:
                continue  # CybORG only reads the blue agents' entries
            bits = np.asarray(message)
            if bits.shape != (cc4.MESSAGE_LENGTH,):
                raise ValueError(f"{agent}: a message must have shape ({cc4.MESSAGE_LENGTH},), got {bits.shape}")
            sent[_AGENT_INDEX[agent]] = bits.astype(bool)
        return sent


def make_cc4(seed: int | None = None, steps: int = cc4.EPISODE_STEPS) -> CC4Sim:
    """Our CC4 simulator with the API of CybORG's `BlueEnterpriseWrapper` plus `busy_agents()`."""
    return CC4Sim(seed=seed, steps=steps)
