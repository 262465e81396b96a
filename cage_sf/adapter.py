"""CC4 blue team (dicts of per-agent vectors) -> Sample Factory's fixed-shape multi-agent env.

This module is the only place that knows about padding and masks as observation keys. Every agent gets the
same observation dict:
  obs           the agent's features (its CC4 vector + memory, `cc4_memory.AgentMemory`) zero-padded
  team          every agent's features and the step: what the value networks see (the reward is the team's)
  agent_type    0 for blue_agent_0..3 (small subnet), 1 for blue_agent_4 (large subnet)
  valid_actions 242 flags: the backend's action mask padded with False; only Sleep while the agent is busy
and one Discrete(242) action space.

Every agent is active every step. While an agent's multi-step action runs, Sleep is its only valid action
(probability 1: no policy gradient, importance ratio 1) and nothing is submitted for it (CybORG would drop
the action and still charge a Restore), so the rewards earned while the action runs reach the decision that
started it through the V-trace recursion, over real observations and values.
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
from cage_sf.submission_template.cc4_memory import AgentMemory, feature_size

log = logging.getLogger(__name__)

FEATURES = tuple(feature_size(cc4.agent_layout(kind)) for kind in (cc4.SMALL, cc4.LARGE))  # by agent type
OBS_SIZE = max(FEATURES)
TEAM_SIZE = sum(FEATURES[cc4.agent_type(a)] for a in cc4.AGENTS)
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

    def __init__(
        self,
        make_backend: Callable[[], CC4Env],
        step_timeout_s: float,
        host_memory: bool = True,
        render_mode: str | None = None,
    ):
        self.observation_space = spaces.Dict(
            {
                "obs": spaces.Box(0.0, 2.0, (OBS_SIZE,), np.float32),
                "team": spaces.Box(0.0, 2.0, (TEAM_SIZE,), np.float32),
                "agent_type": spaces.Box(0.0, 1.0, (1,), np.float32),
                "valid_actions": spaces.Box(0.0, 1.0, (NUM_ACTIONS,), np.float32),
            }
        )
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.render_mode = render_mode
        self._make_backend = make_backend
        self._step_timeout_s = step_timeout_s
        self._backend = make_backend()
        self._memory = {a: AgentMemory(cc4.agent_layout(cc4.agent_type(a), host_memory)) for a in cc4.AGENTS}
        self._episode = EpisodeStats()
        self._faults = 0
        self._agent_type = {a: np.array([cc4.agent_type(a)], np.float32) for a in cc4.AGENTS}
        self._sleep = {a: cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS}
        self._only_sleep = {a: self._padded_mask(np.arange(NUM_ACTIONS) == self._sleep[a]) for a in cc4.AGENTS}
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
            memory = self._memory[agent]
            if memory.busy:
                continue
            action = int(action)
            submitted[agent] = action if action < self._num_actions[agent] else self._sleep[agent]
            memory.act(submitted[agent], bool(self._valid[agent][submitted[agent]]))
        return submitted

    def _encode(self, obs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        features = []
        for agent in cc4.AGENTS:
            self._memory[agent].observe(obs[agent])
            features.append(self._memory[agent].features())
        team = np.concatenate(features)
        encoded = []
        for agent, own in zip(cc4.AGENTS, features, strict=True):
            padded = np.zeros(OBS_SIZE, np.float32)
            padded[: len(own)] = own
            valid = self._only_sleep[agent] if self._memory[agent].busy else self._valid[agent]
            encoded.append({"obs": padded, "team": team, "agent_type": self._agent_type[agent], "valid_actions": valid})
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
        # a faulted episode's partial return would look like a great episode to SF's best-checkpoint logic:
        # true_objective=None keeps it out of that metric (the fault is counted in cc4/env_fault)
        infos = [{"episode_extra_stats": {"cc4/env_fault": 1.0}, "true_objective": None} for _ in cc4.AGENTS]
        n = self.num_agents
        return self._start_episode(), [0.0] * n, [False] * n, [True] * n, infos

    def _start_episode(self, seed: int | None = None) -> list[dict[str, np.ndarray]]:
        obs, info = self._backend.reset(seed=seed)
        for memory in self._memory.values():
            memory.reset()
        self._episode = EpisodeStats()
        # CybORG computes the masks at reset only (which hosts exist): pad them once per episode
        self._valid = {agent: self._padded_mask(info[agent]["action_mask"]) for agent in cc4.AGENTS}
        return self._encode(obs)
