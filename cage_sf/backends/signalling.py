"""A tiny CC4-shaped env where only a message earns reward: a test that learned messages are trained end to end.

CC4's shapes, masks, durations and busy rule (from the synthetic backend), no dynamics. Each step a fresh
secret bit shows in blue_agent_0's vector (at `SECRET_INDEX`; every other agent sees only the phase); the team
earns `PAYOFF` on a step whose message from blue_agent_0 starts with that bit, and nothing else pays. Without
messages, or with messages that ignore the observation, the return is half the maximum (about 250 per 500-step
episode); a policy that learned to signal the secret earns about 500.
"""

from __future__ import annotations

import numpy as np

from cage_sf import cc4
from cage_sf.backends.synthetic import SyntheticBackend

SIGNALLER = cc4.AGENTS[0]
SECRET_INDEX = 1  # in blue_agent_0's vector: a subnet one-hot bit in CC4, the secret here
PAYOFF = 1.0


class SignallingBackend(SyntheticBackend):
    def step(self, actions: dict[str, int], messages: dict[str, np.ndarray] | None = None):
        sent = (messages or {}).get(SIGNALLER)
        payoff = PAYOFF if sent is not None and int(sent[0]) == self._secret else 0.0
        obs, _, terminated, truncated, infos = super().step(actions, messages)
        return obs, dict.fromkeys(cc4.AGENTS, payoff), terminated, truncated, infos

    def _observations(self) -> dict[str, np.ndarray]:
        self._secret = int(self._rng.integers(2))
        obs = {agent: np.zeros(cc4.OBS_SIZE[cc4.agent_type(agent)], np.int64) for agent in cc4.AGENTS}
        for vector in obs.values():
            vector[cc4.PHASE_INDEX] = self._phase()
        obs[SIGNALLER][SECRET_INDEX] = self._secret
        return obs
