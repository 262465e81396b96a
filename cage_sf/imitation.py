"""Imitation warm start (`--imitate=POLICY`): before APPO's first step the actors learn a scripted defender's
choices and the critics the returns it earns, on episodes of our simulator, and the run's first checkpoint
holds the result. Reinforcement learning then starts from a policy that already defends instead of from noise.

Only a fresh run imitates: a run with a checkpoint resumes from it. The demonstrations go through the same
adapter as training (`CC4VectorEnv`), so the networks learn from exactly the features they will see; only the
decisions of free agents are imitated (a busy agent's only choice is Sleep).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional

from cage_sf import cc4
from cage_sf.adapter import NUM_ACTIONS, CC4VectorEnv, action_space, observation_space
from cage_sf.agent.cc4_agent import one_thread
from cage_sf.backends import make_backend
from cage_sf.losses import COMMAND_OF, anchor_path, command_probabilities
from cage_sf.scripted import Policy, load_policy, true_state

NUM_ENVS = 8  # simulator episodes played side by side while recording
HELD_OUT_SEED = 1_000_000  # held-out demonstrations' seeds start here (training's at the run's seed)


class _Teacher:
    """A backend whose scripted policy decides every step from what the backend shows: the observations and
    masks of the last reset or step and Analyse's findings. A new policy starts with every episode."""

    def __init__(self, backend, policy: str, rng: np.random.Generator):
        self._backend, self._new_policy, self._rng = backend, load_policy(policy), rng
        self._policy: Policy | None = None
        self._obs: dict[str, np.ndarray] = {}
        self._masks: dict[str, np.ndarray] = {}

    def reset(self, seed: int | None = None):
        self._obs, info = self._backend.reset(seed=seed)
        self._masks = {a: np.asarray(info[a]["action_mask"]) for a in cc4.AGENTS}
        self._policy = self._new_policy()
        return self._obs, info

    def step(self, actions, messages=None):
        result = self._backend.step(actions, messages)
        self._obs = result[0]
        return result

    def choose(self) -> list[int]:
        analysis = {a: self._backend.analysis(a) for a in cc4.AGENTS}
        actions = self._policy(self._obs, self._masks, self._rng, analysis, **true_state(self._policy, self._backend))
        return [actions[a] for a in cc4.AGENTS]

    def __getattr__(self, name: str):
        return getattr(self._backend, name)


@dataclass
class Demonstrations:
    """One row per agent and env step: its inputs, the teacher's action, the discounted (scaled) team return."""

    inputs: dict[str, torch.Tensor]
    actions: torch.Tensor
    returns: torch.Tensor
    free: torch.Tensor  # the agent had a choice (not busy)
    mean_return: float  # the teacher's mean episode return, counted as training counts it


def demonstrate(
    policy: str,
    episodes: int,
    gamma: float,
    reward_scale: float,
    seed: int = 0,
    steps: int = cc4.EPISODE_STEPS,
    privileged: bool = False,
) -> Demonstrations:
    """Play `policy` on our simulator for `episodes` episodes of `steps` env steps (NUM_ENVS at a time) through
    the training adapter (`privileged`: with the true state the privileged critics read)."""
    rng = np.random.default_rng(seed)
    teachers: list[_Teacher] = []

    def teacher() -> _Teacher:
        teachers.append(_Teacher(make_backend("sim", seed=seed + len(teachers), steps=steps), policy, rng))
        return teachers[-1]

    env = CC4VectorEnv(teacher, NUM_ENVS, step_timeout_s=60.0, privileged=privileged)
    obs, _ = env.reset(seed=seed)
    inputs: dict[str, list[np.ndarray]] = {key: [] for key in obs}
    actions, rewards, dones, episode_returns = [], [], [], []
    for _ in range(-(-episodes // NUM_ENVS) * (steps - 1)):  # an episode ends after steps - 1 (CybORG's count)
        for key, value in obs.items():
            inputs[key].append(value.astype(np.float16))
        chosen = np.array([teacher.choose() for teacher in teachers]).ravel()
        obs, reward, terminated, truncated, infos = env.step(chosen)
        actions.append(chosen)
        rewards.append(reward * reward_scale)
        dones.append(terminated | truncated)
        episode_returns += [i["true_objective"] for i in infos[:: len(cc4.AGENTS)] if "episode_extra_stats" in i]
    returns = np.zeros_like(np.array(rewards))
    following = np.zeros_like(rewards[0])
    for t in reversed(range(len(rewards))):  # every recorded episode is complete: nothing to bootstrap
        following = rewards[t] + gamma * following * ~dones[t]
        returns[t] = following
    stacked = {key: torch.from_numpy(np.concatenate(value)) for key, value in inputs.items()}
    return Demonstrations(
        inputs=stacked,
        actions=torch.from_numpy(np.concatenate(actions)),
        returns=torch.from_numpy(returns.ravel()).float(),
        free=stacked["valid_actions"].float().sum(dim=1) > 1,
        mean_return=float(np.mean(episode_returns)),
    )


def smoothed_targets(actions: torch.Tensor, valid: torch.Tensor, kinds: torch.Tensor, smoothing: float):
    """The teacher's action with probability 1 - `smoothing`; the rest split evenly over the valid commands and
    within a command evenly over its valid targets (Sleep, one action, then gets as much as all 48 Decoys)."""
    command = COMMAND_OF[kinds]
    per_command = functional.one_hot(command, len(cc4.COMMANDS) + 1).float() * valid.unsqueeze(2)
    counts = per_command.sum(dim=1)  # valid actions per command
    commands = (counts[:, : len(cc4.COMMANDS)] > 0).sum(dim=1, keepdim=True)
    share = valid / (counts.gather(1, command) * commands).clamp_min(1)
    targets = smoothing * share
    targets[torch.arange(len(actions)), actions] += 1.0 - smoothing
    return targets


def floor_penalty(logits: torch.Tensor, valid: torch.Tensor, kinds: torch.Tensor, floor: float) -> torch.Tensor:
    """How far (in log-probability, summed over commands, mean over rows) the offered commands fall below
    `floor`: zero once every valid command keeps at least `floor`, whatever the teacher does."""
    by_command, offered = command_probabilities(logits, valid, kinds)
    shortfall = functional.relu(np.log(floor) - torch.log(by_command.clamp_min(1e-30)))
    return (shortfall * offered).sum(dim=1).mean()


def imitate(
    model,
    demos: Demonstrations,
    epochs: int,
    lr: float,
    batch_size: int = 512,
    progress: bool = False,
    smoothing: float = 0.0,
    floor: float = 0.0,
) -> dict[str, float]:
    """Cross-entropy of the actors' logits on the teacher's actions (free agents; `smoothing`: on
    `smoothed_targets`; `floor`: plus `floor_penalty`) plus the critics' squared error on its returns. Returns the
    last epoch's mean losses and how often the actors' likeliest action is the teacher's (`progress`: a line per
    epoch)."""
    with one_thread():  # small batches: on a busy 2-core box two threads ran 5x slower than one
        return _imitate(model, demos, epochs, lr, batch_size, progress, smoothing, floor)


def _imitate(
    model,
    demos: Demonstrations,
    epochs: int,
    lr: float,
    batch_size: int,
    progress: bool,
    smoothing: float,
    floor: float,
) -> dict:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    rows = len(demos.actions)
    for epoch in range(epochs):
        totals = np.zeros(3)
        for batch in torch.randperm(rows, generator=generator).split(batch_size):
            inputs = {key: value[batch].float() for key, value in demos.inputs.items()}
            out = model.forward_tail(model.forward_head(model.normalize_obs(inputs)), False, sample_actions=False)
            free = demos.free[batch]
            logits = out["action_logits"][free, :NUM_ACTIONS]
            chosen = demos.actions[batch][free]
            kinds = inputs["agent_type"][free, 0].long()
            valid = inputs["valid_actions"][free] > 0.5
            targets = smoothed_targets(chosen, valid, kinds, smoothing)
            policy_loss = -(targets * functional.log_softmax(logits, dim=1)).sum(dim=1).mean()
            if floor > 0:
                policy_loss = policy_loss + floor_penalty(logits, valid, kinds, floor)
            value_loss = functional.mse_loss(out["values"], demos.returns[batch])
            optimizer.zero_grad()
            (policy_loss + value_loss).backward()
            optimizer.step()
            agree = (logits.argmax(dim=1) == chosen).float().mean()
            totals += [policy_loss.item(), value_loss.item(), agree.item()]
        totals /= -(-rows // batch_size)
        if progress:
            line = f"imitation: epoch {epoch + 1}/{epochs}: agreement {totals[2]:.0%}, value loss {totals[1]:.3f}"
            print(line, flush=True)
    return {"policy_loss": totals[0], "value_loss": totals[1], "agreement": totals[2]}


def held_out_check(model, demos: Demonstrations) -> dict[str, float]:
    """On demonstrations the model was not fitted to: how often its likeliest action is the teacher's, the least
    probability it gives any valid command on any free row (what exploration can still reach), its value loss."""
    with torch.no_grad(), one_thread():
        inputs = {key: value.float() for key, value in demos.inputs.items()}
        out = model.forward_tail(model.forward_head(model.normalize_obs(inputs)), False, sample_actions=False)
        logits = out["action_logits"][demos.free, :NUM_ACTIONS]
        valid = inputs["valid_actions"][demos.free] > 0.5
        by_command, offered = command_probabilities(logits, valid, inputs["agent_type"][demos.free, 0].long())
        least = torch.where(offered, by_command, torch.ones_like(by_command)).min()
        return {
            "agreement": (logits.argmax(dim=1) == demos.actions[demos.free]).float().mean().item(),
            "least_command_probability": least.item(),
            "value_loss": functional.mse_loss(out["values"], demos.returns).item(),
        }


def warm_start(cfg) -> Path | None:
    """The run's first checkpoint from imitating `cfg.imitate`, unless the run has a checkpoint (then None)."""
    from cage_sf.models import CC4ActorCritic

    checkpoint_dir = Path(cfg.train_dir, cfg.experiment, "checkpoint_p0")
    if cfg.imitate == "none" or any(checkpoint_dir.glob("checkpoint_*")):
        return None
    started = time.perf_counter()
    print(f"imitation: {cfg.imitate_episodes} simulator episodes of {cfg.imitate}...", flush=True)
    settings = (cfg.gamma, cfg.reward_scale)
    privileged = cfg.privileged_critic
    demos = demonstrate(cfg.imitate, cfg.imitate_episodes, *settings, cfg.seed or 0, cfg.episode_steps, privileged)
    model = CC4ActorCritic(observation_space(privileged), action_space(cfg.messages), cfg)
    losses = imitate(
        model,
        demos,
        cfg.imitate_epochs,
        cfg.imitate_lr,
        progress=True,
        smoothing=cfg.imitate_smoothing,
        floor=cfg.imitate_floor,
    )
    seed = HELD_OUT_SEED + (cfg.seed or 0)
    held_out = demonstrate(cfg.imitate, NUM_ENVS, *settings, seed, cfg.episode_steps, privileged)
    check = held_out_check(model, held_out)
    print(
        f"imitation: on {NUM_ENVS} held-out episodes the actors pick the teacher's action {check['agreement']:.1%} "
        f"of the time, give every valid command at least {check['least_command_probability']:.1e} "
        f"(value loss {check['value_loss']:.3f})",
        flush=True,
    )
    betas = (cfg.adam_beta1, cfg.adam_beta2)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, betas=betas, eps=cfg.adam_eps)  # as SF's
    checkpoint = {
        "train_step": 0,
        "env_steps": 0,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "curr_lr": cfg.learning_rate,
    }
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    _save(model.state_dict(), anchor_path(cfg))  # the teacher anchor's policy (cage_sf.losses)
    path = checkpoint_dir / f"checkpoint_{0:09d}_0.pth"
    _save(checkpoint, path)
    print(
        f"imitation: the teacher scored {demos.mean_return:.0f} per episode; after {cfg.imitate_epochs} epochs "
        f"the actors pick its action {losses['agreement']:.0%} of the time (value loss {losses['value_loss']:.3f}); "
        f"{time.perf_counter() - started:.0f} s -> {path}",
        flush=True,
    )
    return path


def _save(state: dict, path: Path) -> None:
    """Whole or not at all: an interrupted write leaves no file a run would load."""
    torch.save(state, f"{path}.tmp")
    os.replace(f"{path}.tmp", path)
