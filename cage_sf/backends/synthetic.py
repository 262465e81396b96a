"""A near-zero-cost env with CC4's agents, shapes, masks, action durations and busy rule.

Observations and rewards are random: it models nothing of CC4's dynamics. It exists so tests can
train end to end in seconds, and as the "trivial env of the same shapes" throughput baseline.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from cage_sf import cc4

_SERVERS, _USERS = 6, 10  # host slots per subnet: server_0..5 then user_0..9 (docs/cc4.md §1.8)


class SyntheticBackend:
    def __init__(self, seed: int | None = None, steps: int = cc4.EPISODE_STEPS):
        self._steps = steps
        self._rng = np.random.default_rng(seed)
        self._durations = {a: cc4.action_durations(cc4.agent_type(a)) for a in cc4.AGENTS}
        self._restores = {a: cc4.restore_actions(cc4.agent_type(a)) for a in cc4.AGENTS}
        self._labels = {a: cc4.action_commands(cc4.agent_type(a)) for a in cc4.AGENTS}
        self.agents: list[str] = list(cc4.AGENTS)

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._t = 0
        self._remaining = dict.fromkeys(cc4.AGENTS, 0)
        self._masks = {a: self._draw_mask(cc4.agent_type(a)) for a in cc4.AGENTS}
        self.agents = list(cc4.AGENTS)
        return self._observations(), self._infos()

    def step(self, actions: dict[str, int], messages: dict[str, np.ndarray] | None = None):
        restore_submissions = 0
        for agent, action in actions.items():
            restore_submissions += bool(self._restores[agent][action] and self._masks[agent][action])
            if self._remaining[agent] == 0:
                self._remaining[agent] = self._durations[agent][action] if self._masks[agent][action] else 1
        for agent in cc4.AGENTS:
            self._remaining[agent] = max(self._remaining[agent] - 1, 0)
        self._t += 1
        done = self._t >= self._steps - 1
        reward = -float(restore_submissions) - float(self._rng.random())
        if done:
            self.agents = []
        flags = dict.fromkeys(cc4.AGENTS, done)
        return self._observations(), dict.fromkeys(cc4.AGENTS, reward), flags, dict(flags), self._infos()

    def action_space(self, agent: str) -> spaces.Discrete:
        return spaces.Discrete(cc4.NUM_ACTIONS[cc4.agent_type(agent)])

    def observation_space(self, agent: str) -> spaces.Space:
        return spaces.MultiDiscrete([3] + [2] * (cc4.OBS_SIZE[cc4.agent_type(agent)] - 1))

    def action_labels(self, agent: str) -> list[str]:
        return self._labels[agent]

    def action_mask(self, agent: str) -> np.ndarray:
        return self._masks[agent]

    def analysis(self, agent: str) -> np.ndarray:
        """No host here carries files: every Analyse comes back clean."""
        return np.zeros(cc4.HOST_SLOTS[cc4.agent_type(agent)], dtype=np.int8)

    @property
    def step_count(self) -> int:
        return self._t

    def busy_agents(self) -> set[str]:
        return {agent for agent, remaining in self._remaining.items() if remaining > 0}

    def _phase(self) -> int:
        return min(3 * self._t // self._steps, 2)

    def _observations(self) -> dict[str, np.ndarray]:
        obs = {}
        for agent in cc4.AGENTS:
            vector = (self._rng.random(cc4.OBS_SIZE[cc4.agent_type(agent)]) < 0.05).astype(np.int64)
            vector[cc4.PHASE_INDEX] = self._phase()
            obs[agent] = vector
        return obs

    def _infos(self) -> dict[str, dict]:
        return {agent: {"action_mask": self._masks[agent]} for agent in cc4.AGENTS}

    def _draw_mask(self, kind: int) -> np.ndarray:
        """Host slots exist as in CC4 (3-10 users, 1-6 servers per subnet); every other action is valid."""
        hosts = []
        for _ in range(cc4.SUBNETS[kind]):
            servers, users = self._rng.integers(1, 7), self._rng.integers(3, 11)
            hosts += [i < servers for i in range(_SERVERS)] + [i < users for i in range(_USERS)]
        host_exists = np.array(hosts)
        blocks = [host_exists if c in cc4.HOST_COMMANDS else np.ones(n, bool) for c, n in cc4.command_layout(kind)]
        return np.concatenate(blocks)
