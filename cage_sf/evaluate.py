"""`cage-sf evaluate`: an exported submission through the loop of CybORG's `evaluation.py`, on either backend.

Same counting as the official script (the mean blue reward of every step but the one on which the
episode ends), same `summary.json`, plus per-episode returns and a PNG.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from statistics import mean, stdev
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from cage_sf import cc4
from cage_sf.agent.cc4_agent import MessageRelay
from cage_sf.backends import make_backend
from cage_sf.divergence import check_finite
from cage_sf.errors import UsageError
from cage_sf.plots import plot_evaluation
from cage_sf.stats import mean_and_sem, paired_difference


def evaluation_episode(
    env, choose: Callable[[dict[str, np.ndarray]], dict[str, int]]
) -> Iterator[tuple[int, dict[str, np.ndarray], float | None]]:
    """Play one episode as CybORG's `evaluation.py` does, yielding (k, observations, team reward) after every
    step k. The reward is None on the step where every agent is done: evaluation.py does not count it."""
    observations, _ = env.reset()
    for k in range(1, cc4.EPISODE_STEPS + 1):
        observations, reward, terminated, truncated, _ = env.step(choose(observations))
        done = {a: terminated.get(a, False) or truncated.get(a, False) for a in env.agents}
        if all(done.values()):
            yield k, observations, None
            return
        yield k, observations, mean(reward.values())


def phase_of(observations: dict[str, np.ndarray]) -> int:
    return int(observations[cc4.AGENTS[0]][cc4.PHASE_INDEX])


def load_agents(submission: Path) -> tuple[dict, dict]:
    """The submission's agents and its model.json, from an exported directory or zip; its weights finite."""
    zipped = submission.suffix == ".zip"
    module_name = "submission.cc4_agent" if zipped else "cc4_agent"
    if not (zipped and submission.is_file()) and not (submission / "cc4_agent.py").is_file():
        raise UsageError(f"{submission} is not a cage-sf submission (no cc4_agent.py)")
    # a submission's modules, so that a second submission in this process imports its own, not the first's
    own = {"submission", module_name} | ({path.stem for path in submission.glob("*.py")} if not zipped else set())
    sys.path.insert(0, str(submission))
    try:
        for name in [m for m in sys.modules if m in own or m.startswith("submission.")]:
            del sys.modules[name]
        module = importlib.import_module(module_name)
        agents, policy = module.load_agents(module_name), module.CC4Policy.load(module_name)
    except Exception as exc:
        raise UsageError(f"cannot load the submission in {submission}: {exc}".splitlines()[0]) from None
    finally:
        sys.path.remove(str(submission))
    check_finite(policy.actors.state_dict(), submission if zipped else submission / "model.safetensors")
    return agents, policy.config


class Played(NamedTuple):
    """Per episode: its return, its reward per phase and its command mix (`command_mix`)."""

    returns: list[float]
    phase_sums: list[list[float]]
    command_mixes: list[dict[str, float]]


def play(agents: dict, backend: str, episodes: int, seed: int | None = None, progress: str | None = None) -> Played:
    """Episodes of `agents` (objects with `attach` and `get_action`) on a backend, counted as `evaluation.py` does.
    With a seed, episode k is played on a fresh backend seeded seed + k (what `evaluation.py --seed=seed+k` plays
    first), and sampled actions draw from torch seeded seed + k: every policy meets the same episodes, so two can
    be compared episode by episode (`cage_sf.stats.paired_difference`), and a pass repeats. Without one, a single
    unseeded backend plays them all."""
    env, counts = None, np.zeros(len(cc4.COMMANDS))
    command_of = {name: cc4.agent_layout(cc4.agent_type(name))["command"] for name in agents}

    def choose(observations: dict[str, np.ndarray]) -> dict[str, int]:
        actions = {
            name: agent.get_action(observations[name], env.action_space(name))
            for name, agent in agents.items()
            if name in env.agents
        }
        for name in actions.keys() - env.busy_agents():  # a busy agent's action is dropped: no decision
            counts[command_of[name][actions[name]]] += 1
        return actions

    played = Played([], [], [])
    for k in tqdm(range(episodes), desc=progress, unit="episode", disable=progress is None):
        if seed is not None:
            torch.manual_seed(seed + k)
        if env is None or seed is not None:
            env = make_backend(backend, seed=None if seed is None else seed + k)
            for agent in agents.values():
                agent.attach(env)
            env = MessageRelay(env, agents)
        phases, counts[:] = [0.0, 0.0, 0.0], 0.0
        for _, observations, reward in evaluation_episode(env, choose):
            if reward is not None:
                phases[phase_of(observations)] += reward
        played.returns.append(sum(phases))
        played.phase_sums.append(phases)
        played.command_mixes.append(command_mix(counts))
    return played


def play_submission(
    submission: Path, greedy: bool | None, backend: str, episodes: int, seed: int | None, progress: str, workers: int
) -> Played:
    """`play` of the submission in `submission` (greedy or sampled; None: as exported), seeded episodes split over
    `workers` processes. Episode k is its own backend and sampling seed, seed + k, so where it is played changes
    nothing; the parts come back in episode order. Unseeded episodes share one backend, here."""
    if workers <= 1 or episodes <= 1 or seed is None:
        return play(_loaded(submission, greedy), backend, episodes, seed, progress)
    jobs = [(backend, seed + k) for k in range(episodes)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, episodes), initializer=_load_worker_agents, initargs=(submission, greedy)) as pool:
        parts = list(tqdm(pool.imap(_play_one, jobs), total=episodes, desc=progress, unit="episode"))
        pool.close()  # let the workers exit on their own (the `with` would kill them mid-cleanup)
        pool.join()
    return Played(*([value for part in parts for value in getattr(part, field)] for field in Played._fields))


def _loaded(submission: Path, greedy: bool | None) -> dict:
    agents, _ = load_agents(submission)
    if greedy is not None:
        for agent in agents.values():
            agent.greedy = greedy
    return agents


_worker_agents: dict = {}


def _load_worker_agents(submission: Path, greedy: bool | None) -> None:
    _worker_agents.update(_loaded(submission, greedy))


def _play_one(job: tuple[str, int]) -> Played:
    backend, seed = job
    return play(_worker_agents, backend, 1, seed)


def _versus(policy: str, returns: list[float], theirs: list[float]) -> dict:
    average, sem = mean_and_sem(theirs)
    difference, se = paired_difference(returns, theirs)
    return {"policy": policy, "return": average, "sem": sem, "difference": difference, "difference_se": se}


def _opponent(versus: str, workers: int) -> Callable[[str, int, int], list[float]]:
    """What `--versus` names, checked before any episode is played: another submission (a path that exists, played
    as it was exported) or a scripted defender. Returns the function that plays it: (backend, episodes, seed) ->
    its returns on the same seeded episodes."""
    if Path(versus).exists():
        load_agents(Path(versus))
        return lambda backend, episodes, seed: (
            play_submission(Path(versus), None, backend, episodes, seed, f"same seeds, {versus}", workers).returns
        )
    from cage_sf.scripted import load_policy, policy_returns

    load_policy(versus)
    return lambda backend, episodes, seed: policy_returns(versus, episodes, seed, backend)


def command_mix(counts: np.ndarray) -> dict[str, float]:
    """Each command's share of the decisions (free agents' actions) counted per command, in cc4.COMMANDS order."""
    return {command: float(n / counts.sum()) for command, n in zip(cc4.COMMANDS, counts, strict=True)}


def mean_command_mix(mixes: list[dict[str, float]]) -> dict[str, float]:
    return {command: mean(mix[command] for mix in mixes) for command in cc4.COMMANDS}


def command_mix_line(mix: dict[str, float]) -> str:
    return ", ".join(f"{command} {share:.1%}" for command, share in mix.items())


def evaluate(
    submission: Path,
    episodes: int,
    seed: int | None,
    backend: str,
    out: Path,
    versus: str | None = None,
    workers: int = 1,
    other_mode: bool = True,
) -> dict:
    """The submission as exported, then (unless `other_mode` is off) with its other action mode (greedy or
    sampled) on the same seeds; with `versus` (a scripted defender of cage_sf.scripted, or another submission),
    also that on the same seeded episodes, and the paired difference. A submission's seeded episodes are split over
    `workers` processes."""
    if versus is not None and seed is None:
        raise UsageError("--versus compares episode by episode: it needs --seed")
    opponent = None if versus is None else _opponent(versus, workers)
    agents, config = load_agents(submission)
    start = datetime.now()
    mode = "greedy" if config["greedy"] else "sample"
    other = "sample" if mode == "greedy" else "greedy"
    played = play_submission(submission, None, backend, episodes, seed, f"evaluating on {backend}", workers)
    returns, phase_sums, mixes = played
    end = datetime.now()

    info = config["submission"]
    summary = {
        "submission": {"author": info["name"], "team": info["team"], "technique": info["technique"]},
        "parameters": {"seed": seed, "episode_length": cc4.EPISODE_STEPS, "max_episodes": episodes, "backend": backend},
        "time": {"start": str(start), "end": str(end), "elapsed": str(end - start)},
        "reward": {"mean": mean(returns), "stdev": stdev(returns) if len(returns) > 1 else 0.0},
        "agents": {name: str(agent) for name, agent in agents.items()},
    }
    modes = {mode: returns}
    if other_mode:
        modes[other] = play_submission(
            submission, other == "greedy", backend, episodes, seed, f"same seeds, {other} actions", workers
        ).returns
    if opponent is not None:
        summary["versus"] = _versus(versus, returns, opponent(backend, episodes, seed))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary))
    (out / "episodes.json").write_text(
        json.dumps({"returns": returns, "phase_sums": phase_sums, "command_mixes": mixes, "modes": modes})
    )
    title = f"{info['name']} on {backend}: {mean(returns):.0f} ± {summary['reward']['stdev']:.0f} ({episodes} episodes)"
    plot_evaluation(returns, phase_sums, title, out / "returns.png")
    for name, scores in modes.items():
        average, sem = mean_and_sem(scores)
        print(f"{name}: {average:.0f} ± {sem:.0f} (mean ± SEM){' (as exported)' * (name == mode)}")
    print(f"decisions by command ({mode}): {command_mix_line(mean_command_mix(mixes))}")
    if versus is not None:
        found = summary["versus"]
        print(
            f"{versus}: {found['return']:.1f} ± {found['sem']:.1f}; submission - {versus}: "
            f"{found['difference']:+.1f} ± {found['difference_se']:.1f} (paired by seed, ± SE)"
        )
    print(f"{title}\nwritten to {out}: summary.json, episodes.json, returns.png")
    return summary
