"""CC4 blue team (dicts of per-agent vectors) -> Sample Factory's fixed-shape multi-agent env.

This module is the only place that knows about padding, masks as observation keys and `is_active`.
Every agent gets the same observation dict:
  obs           the agent's CC4 vector zero-padded to 210
  agent_type    0 for blue_agent_0..3 (small subnet), 1 for blue_agent_4 (large subnet)
  valid_actions 242 flags: the backend's action mask, padded with False
and one Discrete(242) action space.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cage_sf import cc4
from cage_sf.backends import CC4Env

log = logging.getLogger(__name__)

OBS_SIZE = max(cc4.OBS_SIZE)
NUM_ACTIONS = max(cc4.NUM_ACTIONS)


@dataclass
class EpisodeStats:
    """Team reward counted as CybORG's `evaluation.py` does: every step but the final one."""

    phase_rewards: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])

    def record(self, team_reward: float, phase: int) -> None:
        self.phase_rewards[phase] += team_reward

    def summary(self) -> dict[str, float]:
        stats = {f"cc4/reward_phase_{p}": r for p, r in enumerate(self.phase_rewards)}
        stats["cc4/eval_return"] = sum(self.phase_rewards)
        stats["cc4/env_fault"] = 0.0
        return stats


class CC4SampleFactoryEnv(gym.Env):
    is_multiagent = True
    num_agents = len(cc4.AGENTS)

    def __init__(self, make_backend: Callable[[], CC4Env], step_timeout_s: float, render_mode: str | None = None):
        self.observation_space = spaces.Dict(
            {
                "obs": spaces.Box(0.0, 2.0, (OBS_SIZE,), np.float32),
                "agent_type": spaces.Box(0.0, 1.0, (1,), np.float32),
                "valid_actions": spaces.Box(0.0, 1.0, (NUM_ACTIONS,), np.float32),
            }
        )
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.render_mode = render_mode
        self._make_backend = make_backend
        self._step_timeout_s = step_timeout_s
        self._backend = make_backend()
        self._busy: set[str] = set()
        self._episode = EpisodeStats()
        self._faults = 0
        self._agent_type = {a: np.array([cc4.agent_type(a)], np.float32) for a in cc4.AGENTS}
        self._sleep = {a: cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS}
        self._num_actions = {a: cc4.NUM_ACTIONS[cc4.agent_type(a)] for a in cc4.AGENTS}

    def reset(self, seed: int | None = None, options: dict | None = None):
        return self._start_episode(seed), [{} for _ in cc4.AGENTS]

    def step(self, actions):
        submitted = self._backend_actions(actions)
        started = time.perf_counter()
        try:
            obs, rewards, terminated, truncated, _ = self._backend.step(submitted)
        except Exception:
            return self._recover_from_fault("raised an exception", exc_info=True)
        if (elapsed := time.perf_counter() - started) > self._step_timeout_s:
            return self._recover_from_fault(f"took {elapsed:.1f}s (limit {self._step_timeout_s}s)")

        team_reward = float(np.mean([rewards[a] for a in cc4.AGENTS]))
        done = any(terminated[a] or truncated[a] for a in cc4.AGENTS)
        infos = [{} for _ in cc4.AGENTS]
        if done:
            stats = self._episode.summary()
            encoded = self._start_episode()
            for agent_info in infos:
                agent_info.update(episode_extra_stats=stats, true_objective=stats["cc4/eval_return"])
        else:
            self._episode.record(team_reward, int(obs[cc4.AGENTS[0]][cc4.PHASE_INDEX]))
            self._busy = self._backend.busy_agents()
            for agent, agent_info in zip(cc4.AGENTS, infos, strict=True):
                agent_info["is_active"] = agent not in self._busy
            encoded = self._encode(obs)

        return (
            encoded,
            [team_reward] * self.num_agents,
            [bool(terminated[a]) for a in cc4.AGENTS],
            [bool(truncated[a]) for a in cc4.AGENTS],
            infos,
        )

    def close(self) -> None:
        self._backend = None

    def _backend_actions(self, actions) -> dict[str, int]:
        """Busy agents submit nothing (CybORG would drop it and still charge Restore); padding maps to Sleep."""
        submitted = {}
        for agent, action in zip(cc4.AGENTS, actions, strict=True):
            if agent in self._busy:
                continue
            action = int(action)
            submitted[agent] = action if action < self._num_actions[agent] else self._sleep[agent]
        return submitted

    def _encode(self, obs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        encoded = []
        for agent in cc4.AGENTS:
            padded_obs = np.zeros(OBS_SIZE, np.float32)
            padded_obs[: len(obs[agent])] = obs[agent]
            encoded.append(
                {"obs": padded_obs, "agent_type": self._agent_type[agent], "valid_actions": self._valid[agent]}
            )
        return encoded

    @staticmethod
    def _padded_mask(mask) -> np.ndarray:
        valid = np.zeros(NUM_ACTIONS, np.float32)
        valid[: len(mask)] = mask
        valid.flags.writeable = False
        return valid

    def _recover_from_fault(self, what: str, exc_info: bool = False):
        """End the episode, rebuild the backend and carry on; the episode is counted as a fault."""
        self._faults += 1
        first = self._faults == 1
        log.error(
            "CC4 env step %s (fault #%d): episode ended, env rebuilt%s",
            what,
            self._faults,
            "" if first else " (traceback logged for the first fault only)",
            exc_info=exc_info and first,
        )
        self._backend = self._make_backend()
        infos = [{"episode_extra_stats": {"cc4/env_fault": 1.0}} for _ in cc4.AGENTS]
        n = self.num_agents
        return self._start_episode(), [0.0] * n, [False] * n, [True] * n, infos

    def _start_episode(self, seed: int | None = None) -> list[dict[str, np.ndarray]]:
        obs, info = self._backend.reset(seed=seed)
        self._busy = set()
        self._episode = EpisodeStats()
        # CybORG computes the masks at reset only (which hosts exist): pad them once per episode
        self._valid = {agent: self._padded_mask(info[agent]["action_mask"]) for agent in cc4.AGENTS}
        return self._encode(obs)
