"""Our CC4 simulator as a PettingZoo `ParallelEnv`, for users of other multi-agent libraries."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from cage_sf import cc4
from cage_sf.sim.env import make_cc4


class CC4ParallelEnv(ParallelEnv):
    """Blue agents act through `step({agent: index})`; `infos[agent]["action_mask"]` lists the valid indices.

    As in CybORG, every agent is done together at the end of an episode (step 499), and `agents` is then empty.
    """

    metadata = {"name": "cage_sf_cc4_v0", "render_modes": []}

    def __init__(self, seed: int | None = None, steps: int = cc4.EPISODE_STEPS):
        self._env = make_cc4(seed=seed, steps=steps)
        self.possible_agents = list(cc4.AGENTS)
        self.agents: list[str] = []

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, infos = self._env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        return obs, infos

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        obs, rewards, terminated, truncated, infos = self._env.step({a: int(i) for a, i in actions.items()})
        self.agents = list(self._env.agents)
        return obs, rewards, terminated, truncated, infos

    def observation_space(self, agent: str) -> spaces.Space:
        return self._env.observation_space(agent)

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._env.action_space(agent)

    def action_mask(self, agent: str) -> np.ndarray:
        return self._env.action_mask(agent)

    def analysis(self, agent: str) -> np.ndarray:
        """What the agent's Analyse that finished in the last step found of red's files per host slot."""
        return self._env.analysis(agent)
