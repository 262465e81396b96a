"""Real CybORG CC4, configured exactly as CybORG's own `evaluation.py` does (imported lazily: slow, optional)."""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from cage_sf import cc4
from cage_sf.agent.cc4_memory import malware_in_files


class CybORGBackend:
    def __init__(self, seed: int | None = None, steps: int = cc4.EPISODE_STEPS):
        from CybORG import CybORG
        from CybORG.Agents import EnterpriseGreenAgent, FiniteStateRedAgent, SleepAgent
        from CybORG.Agents.Wrappers.BlueEnterpriseWrapper import BlueEnterpriseWrapper
        from CybORG.Simulator.Scenarios import EnterpriseScenarioGenerator

        generator = EnterpriseScenarioGenerator(
            blue_agent_class=SleepAgent,
            green_agent_class=EnterpriseGreenAgent,
            red_agent_class=FiniteStateRedAgent,
            steps=steps,
        )
        self._cyborg = CybORG(generator, "sim", seed=seed)
        self._env = BlueEnterpriseWrapper(self._cyborg)

    @property
    def agents(self) -> list[str]:
        return self._env.agents

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        return self._env.reset(seed=seed)

    def step(self, actions: dict[str, int], messages: dict[str, np.ndarray] | None = None):
        return self._env.step(actions, messages=messages)

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._env.action_space(agent)

    def observation_space(self, agent: str) -> spaces.Space:
        return self._env.observation_space(agent)

    def action_labels(self, agent: str) -> list[str]:
        return self._env.action_labels(agent)

    def action_mask(self, agent: str) -> np.ndarray:
        return np.asarray(self._env.action_mask(agent))

    def analysis(self, agent: str) -> np.ndarray:
        return malware_in_files(self._cyborg.get_observation(agent), self._env.subnets(agent))

    @property
    def step_count(self) -> int:
        return self._cyborg.environment_controller.step_count

    def busy_agents(self) -> set[str]:
        in_progress = self._cyborg.environment_controller.actions_in_progress
        return {agent for agent in cc4.AGENTS if in_progress.get(agent) is not None}
