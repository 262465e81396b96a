"""A tiny CC4-shaped env whose best action pays only while it runs: a test of credit for multi-step actions.

CC4's shapes, masks, durations and busy rule (from the synthetic backend), no dynamics. Every agent, every
step it is free, chooses: Restore (5 steps) costs `RESTORE_COST` when submitted and pays `RESTORE_PAYOFF` on
each of the next `PAYOFF_STEPS` steps, while the agent is busy (+1.4 net over 5 steps); Analyse (2 steps)
pays `ANALYSE_PAYOFF` at once (+0.1 over 2 steps); anything else pays 0. The team reward is the mean over
agents, as in CC4. A trainer that credits a decision with the rewards of its busy window learns Restore
(about +139 per 500-step episode); one that does not sees only Restore's cost and prefers Analyse (about +25).
"""

from __future__ import annotations

import numpy as np

from cage_sf import cc4
from cage_sf.backends.synthetic import SyntheticBackend

RESTORE_COST, RESTORE_PAYOFF, PAYOFF_STEPS, ANALYSE_PAYOFF = -1.0, 0.8, 3, 0.1


class DelayedPayoffBackend(SyntheticBackend):
    def __init__(self, seed: int | None = None, steps: int = cc4.EPISODE_STEPS):
        super().__init__(seed=seed, steps=steps)
        self._commands = {a: np.array(cc4.action_commands(cc4.agent_type(a))) for a in cc4.AGENTS}

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        self._payoff_steps = dict.fromkeys(cc4.AGENTS, 0)
        return super().reset(seed)

    def step(self, actions: dict[str, int], messages: dict[str, np.ndarray] | None = None):
        free = set(cc4.AGENTS) - self.busy_agents()
        payoff = 0.0
        for agent in cc4.AGENTS:
            if self._payoff_steps[agent] > 0:
                payoff += RESTORE_PAYOFF
                self._payoff_steps[agent] -= 1
            if agent not in free or agent not in actions or not self._masks[agent][actions[agent]]:
                continue
            command = self._commands[agent][actions[agent]]
            if command == "Restore":
                payoff += RESTORE_COST
                self._payoff_steps[agent] = PAYOFF_STEPS
            elif command == "Analyse":
                payoff += ANALYSE_PAYOFF
        obs, _, terminated, truncated, infos = super().step(actions, messages)
        return obs, dict.fromkeys(cc4.AGENTS, payoff / len(cc4.AGENTS)), terminated, truncated, infos

    def _observations(self) -> dict[str, np.ndarray]:
        """Nothing to see but the phase: the right choice does not depend on the observation."""
        obs = {agent: np.zeros(cc4.OBS_SIZE[cc4.agent_type(agent)], np.int64) for agent in cc4.AGENTS}
        for vector in obs.values():
            vector[cc4.PHASE_INDEX] = self._phase()
        return obs
