"""CC4 blue teams (dicts of per-agent vectors) -> Sample Factory's fixed-shape multi-agent envs.

This module is the only place that knows about padding and masks as observation keys. Every agent gets the
same observation dict:
  obs           the agent's features (its CC4 vector + memory, `cc4_memory.AgentMemories`) zero-padded
  team          every agent's features and the step: what the value networks see (the reward is the team's)
  agent_type    0 for blue_agent_0..3 (small subnet), 1 for blue_agent_4 (large subnet)
  valid_actions 242 flags: the backend's action mask padded with False; only Sleep while the agent is busy
  state         with `privileged` (simulator only): `CC4Sim.privileged_state`, what blue cannot see, for the critics
and one Discrete(242) action space; with `messages`, a tuple of it and 8 Discrete(2): the bits the agent sends
its team this step (delivered through the backend's `messages`, seen by the others in this step's observation).

Every agent is active every step. While an agent's multi-step action runs, Sleep is its only valid action
(probability 1: no policy gradient, importance ratio 1) and nothing is submitted for it (CybORG would drop
the action and still charge a Restore), so the rewards earned while the action runs reach the decision that
started it through the V-trace recursion, over real observations and values.

`CC4VectorEnv` steps K CC4 envs together and returns stacked arrays for their 5K agents (Sample Factory's
batched sampling: one inference call per step for all of them, no per-agent Python); `CC4SampleFactoryEnv`
is the same for one env as lists of per-agent dicts (SF's non-batched sampling).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cage_sf import cc4
from cage_sf.agent.cc4_memory import AgentMemories, feature_size
from cage_sf.backends import CC4Env
from cage_sf.sim.env import PRIVILEGED_STATE_SIZE

log = logging.getLogger(__name__)

FEATURES = tuple(feature_size(cc4.agent_layout(kind)) for kind in (cc4.SMALL, cc4.LARGE))  # by agent type
PADDED_FEATURES = max(FEATURES)  # one row's width: the large agent's features, the small ones' zero-padded
TEAM_SIZE = sum(FEATURES[cc4.agent_type(a)] for a in cc4.AGENTS)
NUM_ACTIONS = max(cc4.NUM_ACTIONS)

AGENTS_PER_ENV = len(cc4.AGENTS)
SMALL_AGENTS = AGENTS_PER_ENV - 1  # blue_agent_0..3 defend one subnet each, blue_agent_4 (the last) the large one
assert [cc4.agent_type(a) for a in cc4.AGENTS] == [cc4.SMALL] * SMALL_AGENTS + [cc4.LARGE]
_SLEEP = np.array([cc4.sleep_action(cc4.agent_type(a)) for a in cc4.AGENTS])
_AGENT_ACTIONS = np.array([cc4.NUM_ACTIONS[cc4.agent_type(a)] for a in cc4.AGENTS])
COMMAND_OF_ACTION = np.array(  # [agent type, NUM_ACTIONS] -> cc4.COMMANDS index; padding: a command of its own
    [
        cc4.agent_layout(kind)["command"] + [len(cc4.COMMANDS)] * (NUM_ACTIONS - cc4.NUM_ACTIONS[kind])
        for kind in (cc4.SMALL, cc4.LARGE)
    ]
)
_COMMAND = np.where(  # [5, NUM_ACTIONS]: each agent's action -> its cc4.COMMANDS index, padding as Sleep
    COMMAND_OF_ACTION == len(cc4.COMMANDS), cc4.COMMANDS.index("Sleep"), COMMAND_OF_ACTION
)[[cc4.agent_type(a) for a in cc4.AGENTS]]


def action_space(messages: bool) -> spaces.Space:
    if not messages:
        return spaces.Discrete(NUM_ACTIONS)
    return spaces.Tuple([spaces.Discrete(NUM_ACTIONS)] + [spaces.Discrete(2)] * cc4.MESSAGE_LENGTH)


def observation_space(privileged: bool = False) -> spaces.Dict:
    keys = {
        "obs": spaces.Box(0.0, 2.0, (PADDED_FEATURES,), np.float32),
        "team": spaces.Box(0.0, 2.0, (TEAM_SIZE,), np.float32),
        "agent_type": spaces.Box(0.0, 1.0, (1,), np.float32),
        "valid_actions": spaces.Box(0.0, 1.0, (NUM_ACTIONS,), np.float32),
    }
    if privileged:
        keys["state"] = spaces.Box(0.0, 1.0, (PRIVILEGED_STATE_SIZE,), np.float32)
    return spaces.Dict(keys)


class CC4VectorEnv(gym.Env):
    """K CC4 envs stepped together as one multi-agent env of 5K agents, row 5k+i being env k's blue_agent_i.

    Each env auto-resets when its episode ends (its agents' infos then carry the episode's statistics, counted
    as CybORG's `evaluation.py` does: every step but the final one) and is rebuilt after a fault (an exception
    or a step slower than `step_timeout_s`), which ends its episode as truncated. The observation arrays returned
    are rewritten in place at the next step (Sample Factory copies them into its own buffers before that).

    With `stagger_steps` (the episode length), env k's first episode after `reset` is cut after
    k * stagger_steps // K steps (truncated, no statistics): the envs then end their episodes at spread steps
    instead of all together, so a batch of trajectories mixes every stretch of the episode rather than K copies
    of one (which made learning per env step slower: many consecutive updates saw only, say, phase 2)."""

    is_multiagent = True

    def __init__(
        self,
        make_backend: Callable[[], CC4Env],
        num_envs: int,
        step_timeout_s: float,
        host_memory: bool = True,
        render_mode: str | None = None,
        stagger_steps: int = 0,
        messages: bool = False,
        privileged: bool = False,
    ):
        k = self.num_envs = num_envs
        self.num_agents = AGENTS_PER_ENV * k
        self.observation_space = observation_space(privileged)
        self._privileged = privileged
        self.action_space = action_space(messages)
        self._messages = messages
        self.render_mode = render_mode
        self._make_backend = make_backend
        self._step_timeout_s = step_timeout_s
        self._backends = [make_backend() for _ in range(k)]
        self._small = AgentMemories(cc4.agent_layout(cc4.SMALL, host_memory), SMALL_AGENTS * k)
        self._large = AgentMemories(cc4.agent_layout(cc4.LARGE, host_memory), k)
        self._small_vectors = np.zeros((k, SMALL_AGENTS, cc4.OBS_SIZE[cc4.SMALL]), np.float32)
        self._large_vectors = np.zeros((k, cc4.OBS_SIZE[cc4.LARGE]), np.float32)
        self._small_analysis = np.zeros((k, SMALL_AGENTS, cc4.HOST_SLOTS[cc4.SMALL]), np.int8)
        self._large_analysis = np.zeros((k, cc4.HOST_SLOTS[cc4.LARGE]), np.int8)
        self._episode_valid = np.zeros((k, AGENTS_PER_ENV, NUM_ACTIONS), np.float32)  # masks are fixed for an episode
        self._only_sleep = (np.arange(NUM_ACTIONS) == _SLEEP[:, None]).astype(np.float32)
        self._phase_rewards = np.zeros((k, 3))
        self._commands = np.zeros((k, len(cc4.COMMANDS)))  # this episode's decisions per command
        self._command_offsets = len(cc4.COMMANDS) * np.arange(k)[:, None]  # env k's bins in one bincount
        self._stagger_steps = stagger_steps
        self._steps_to_cut = np.zeros(k, np.int64)  # > 0: steps left in a staggered first episode
        self._faults = 0
        self._obs = np.zeros((k, AGENTS_PER_ENV, PADDED_FEATURES), np.float32)
        self._team = np.zeros((k, AGENTS_PER_ENV, TEAM_SIZE), np.float32)
        self._valid = np.zeros((k, AGENTS_PER_ENV, NUM_ACTIONS), np.float32)
        self._outputs = {
            "obs": self._obs.reshape(self.num_agents, PADDED_FEATURES),
            "team": self._team.reshape(self.num_agents, TEAM_SIZE),
            "agent_type": np.tile([cc4.agent_type(a) for a in cc4.AGENTS], k).astype(np.float32)[:, None],
            "valid_actions": self._valid.reshape(self.num_agents, NUM_ACTIONS),
        }
        if privileged:
            self._state = np.zeros((k, AGENTS_PER_ENV, PRIVILEGED_STATE_SIZE), np.float32)
            self._outputs["state"] = self._state.reshape(self.num_agents, PRIVILEGED_STATE_SIZE)

    def reset(self, seed: int | None = None, options: dict | None = None):
        for env in range(self.num_envs):
            self._start_episode(env, None if seed is None else seed * self.num_envs + env)
        self._steps_to_cut[:] = np.arange(self.num_envs) * self._stagger_steps // self.num_envs
        return self._observe(), [{} for _ in range(self.num_agents)]

    def step(self, actions):
        """`actions`: one per agent; with messages, a row per agent: the action, then the 8 bits it sends."""
        actions = np.asarray(actions, np.int64)
        messages = [None] * self.num_envs
        if self._messages:
            bits = actions[:, 1:].reshape(self.num_envs, AGENTS_PER_ENV, cc4.MESSAGE_LENGTH)
            messages = [dict(zip(cc4.AGENTS, sent, strict=True)) for sent in bits]
            actions = actions[:, 0]
        actions = actions.reshape(self.num_envs, AGENTS_PER_ENV)
        actions = np.where(actions < _AGENT_ACTIONS, actions, _SLEEP)  # padding indices mean Sleep
        acting = ~self.busy()
        chosen = _COMMAND[np.arange(AGENTS_PER_ENV), actions] + self._command_offsets
        self._commands += np.bincount(chosen.ravel(), acting.ravel(), self._commands.size).reshape(self._commands.shape)
        valid = np.take_along_axis(self._episode_valid, actions[..., None], axis=2)[..., 0] > 0
        small = np.s_[:, :SMALL_AGENTS]
        self._small.act(actions[small].ravel(), valid[small].ravel(), acting[small].ravel())
        self._large.act(actions[:, SMALL_AGENTS], valid[:, SMALL_AGENTS], acting[:, SMALL_AGENTS])

        rewards = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros((self.num_envs, AGENTS_PER_ENV), bool)
        truncated = np.zeros((self.num_envs, AGENTS_PER_ENV), bool)
        infos = [{} for _ in range(self.num_agents)]
        for env, backend in enumerate(self._backends):
            # busy agents submit nothing: CybORG would drop the action and still charge a Restore
            submitted = {a: int(i) for a, i, act in zip(cc4.AGENTS, actions[env], acting[env], strict=True) if act}
            started = time.perf_counter()
            try:
                obs, agent_rewards, agent_terminated, agent_truncated, _ = backend.step(submitted, messages[env])
            except Exception:
                self._recover_from_fault(env, "raised an exception", truncated, infos, exc_info=True)
                continue
            if (elapsed := time.perf_counter() - started) > self._step_timeout_s:
                self._recover_from_fault(env, f"took {elapsed:.1f}s (limit {self._step_timeout_s}s)", truncated, infos)
                continue
            rewards[env] = np.mean([agent_rewards[a] for a in cc4.AGENTS])
            terminated[env] = [agent_terminated[a] for a in cc4.AGENTS]
            truncated[env] = [agent_truncated[a] for a in cc4.AGENTS]
            if self._steps_to_cut[env] == 1:  # a staggered first episode: cut short, its partial return unreported
                truncated[env] = True
                for info in infos[AGENTS_PER_ENV * env : AGENTS_PER_ENV * (env + 1)]:
                    info.update(true_objective=None)
                self._start_episode(env)
            elif terminated[env].any() or truncated[env].any():
                stats = self._episode_summary(env)
                for info in infos[AGENTS_PER_ENV * env : AGENTS_PER_ENV * (env + 1)]:
                    info.update(episode_extra_stats=stats, true_objective=stats["cc4/eval_return"])
                self._start_episode(env)
            else:
                self._phase_rewards[env, int(obs[cc4.AGENTS[0]][cc4.PHASE_INDEX])] += rewards[env]
                self._store_observations(env, obs)
        self._steps_to_cut[self._steps_to_cut > 0] -= 1
        return self._observe(), np.repeat(rewards, AGENTS_PER_ENV), terminated.ravel(), truncated.ravel(), infos

    def busy(self) -> np.ndarray:
        """[K, 5]: agents whose multi-step action is still running."""
        return np.concatenate([self._small.busy.reshape(self.num_envs, SMALL_AGENTS), self._large.busy[:, None]], 1)

    def close(self) -> None:
        self._backends = []

    def _episode_summary(self, env: int) -> dict[str, float]:
        stats = {f"cc4/reward_phase_{p}": float(r) for p, r in enumerate(self._phase_rewards[env])}
        stats["cc4/eval_return"] = float(self._phase_rewards[env].sum())
        stats["cc4/env_fault"] = 0.0
        shares = self._commands[env] / self._commands[env].sum()  # busy agents' Sleep is no decision
        stats |= {f"cc4/command_{c}": float(s) for c, s in zip(cc4.COMMANDS, shares, strict=True)}
        return stats

    def _observe(self) -> dict[str, np.ndarray]:
        """Every env's new vectors -> the agents' memories -> the output arrays."""
        k, small_size, large_size = self.num_envs, FEATURES[cc4.SMALL], FEATURES[cc4.LARGE]
        self._small.observe(
            self._small_vectors.reshape(k * SMALL_AGENTS, -1), self._small_analysis.reshape(k * SMALL_AGENTS, -1)
        )
        self._large.observe(self._large_vectors, self._large_analysis)
        small = self._small.features().reshape(k, SMALL_AGENTS, small_size)
        large = self._large.features()
        self._obs[:, :SMALL_AGENTS, :small_size] = small
        self._obs[:, SMALL_AGENTS, :large_size] = large
        self._team[:, 0, : SMALL_AGENTS * small_size] = small.reshape(k, -1)
        self._team[:, 0, SMALL_AGENTS * small_size :] = large
        self._team[:, 1:] = self._team[:, :1]
        self._valid[:] = self._episode_valid
        np.copyto(self._valid, self._only_sleep, where=self.busy()[..., None])
        return self._outputs

    def _store_observations(self, env: int, obs: dict[str, np.ndarray]) -> None:
        for i, agent in enumerate(cc4.AGENTS[:SMALL_AGENTS]):
            self._small_vectors[env, i] = obs[agent]
            self._small_analysis[env, i] = self._backends[env].analysis(agent)
        self._large_vectors[env] = obs[cc4.AGENTS[SMALL_AGENTS]]
        self._large_analysis[env] = self._backends[env].analysis(cc4.AGENTS[SMALL_AGENTS])
        if self._privileged:
            self._state[env] = self._backends[env].privileged_state()

    def _start_episode(self, env: int, seed: int | None = None) -> None:
        obs, info = self._backends[env].reset(seed=seed)
        self._steps_to_cut[env] = 0
        self._small.reset(slice(SMALL_AGENTS * env, SMALL_AGENTS * (env + 1)))
        self._large.reset(env)
        self._phase_rewards[env] = 0.0
        self._commands[env] = 0.0
        # CybORG computes the masks at reset only (which hosts exist): pad them once per episode
        self._episode_valid[env] = 0.0
        for i, agent in enumerate(cc4.AGENTS):
            mask = info[agent]["action_mask"]
            self._episode_valid[env, i, : len(mask)] = mask
        self._store_observations(env, obs)

    def _recover_from_fault(self, env: int, what: str, truncated: np.ndarray, infos: list[dict], exc_info=False):
        """End env's episode as truncated, rebuild its backend and carry on; the episode is counted as a fault."""
        self._faults += 1
        first = self._faults == 1
        log.error(
            "CC4 env step %s (fault #%d): episode ended, env rebuilt%s",
            what,
            self._faults,
            "" if first else " (traceback logged for the first fault only)",
            exc_info=exc_info and first,
        )
        self._backends[env] = self._make_backend()
        truncated[env] = True
        # a faulted episode's partial return would look like a great episode to SF's best-checkpoint logic:
        # true_objective=None keeps it out of that metric (the fault is counted in cc4/env_fault)
        for info in infos[AGENTS_PER_ENV * env : AGENTS_PER_ENV * (env + 1)]:
            info.update(episode_extra_stats={"cc4/env_fault": 1.0}, true_objective=None)
        self._start_episode(env)


class CC4SampleFactoryEnv(gym.Env):
    """One CC4 env as Sample Factory's non-batched multi-agent env (lists of per-agent dicts): a
    `CC4VectorEnv` of one env, read row by row."""

    is_multiagent = True
    num_agents = AGENTS_PER_ENV

    def __init__(
        self,
        make_backend: Callable[[], CC4Env],
        step_timeout_s: float,
        host_memory: bool = True,
        render_mode: str | None = None,
        messages: bool = False,
        privileged: bool = False,
    ):
        self._vector = CC4VectorEnv(
            make_backend, 1, step_timeout_s, host_memory, render_mode, messages=messages, privileged=privileged
        )
        self.observation_space = self._vector.observation_space
        self.action_space = self._vector.action_space
        self.render_mode = render_mode

    def reset(self, seed: int | None = None, options: dict | None = None):
        obs, infos = self._vector.reset(seed=seed)
        return self._rows(obs), infos

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self._vector.step(actions)
        return self._rows(obs), rewards.tolist(), terminated.tolist(), truncated.tolist(), infos

    def close(self) -> None:
        self._vector.close()

    @staticmethod
    def _rows(obs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Per-agent views of a copy: the vector env rewrites its arrays in place at the next step."""
        obs = {key: value.copy() for key, value in obs.items()}
        return [{key: value[i] for key, value in obs.items()} for i in range(AGENTS_PER_ENV)]
