"""`cage-sf export`: a training checkpoint -> a CAGE Challenge 4 submission CybORG's evaluation loads.

The submission holds `submission.py`, `cc4_agent.py`, `cc4_memory.py` and `cc4_networks.py` (from
`cage_sf/agent/`, the agent runtime: torch + numpy only), `model.safetensors` (actor weights, no pickle) and
`model.json` (the networks' description, the agent layouts, submission info).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import shutil
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from statistics import mean

import numpy as np
import torch
from safetensors.torch import save_file

from cage_sf import cc4
from cage_sf.agent.cc4_networks import make_actors
from cage_sf.backends import make_backend
from cage_sf.divergence import check_finite
from cage_sf.errors import UsageError
from cage_sf.models import model_config
from cage_sf.runs import check_run_memory, find_checkpoint, run_dir

AGENT_RUNTIME = Path(__file__).resolve().parent / "agent"
RUNTIME_FILES = ("submission.py", "cc4_agent.py", "cc4_memory.py", "cc4_networks.py")


def actor_tensors(checkpoint: Path, config: dict) -> dict[str, torch.Tensor]:
    """The actor weights (and normaliser statistics) of a checkpoint, checked finite and against the model config."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    except Exception as exc:
        raise UsageError(f"cannot read checkpoint {checkpoint}: {exc}".splitlines()[0]) from None
    check_finite(state, checkpoint)
    tensors = {k: v.float().contiguous() for k, v in state.items() if k.startswith("actors.")}
    try:
        make_actors(config).load_state_dict({k.removeprefix("actors."): v for k, v in tensors.items()})
    except RuntimeError as exc:  # names the missing, unexpected and misshapen tensors
        reason = " ".join(str(exc).split())
        raise UsageError(
            f"checkpoint {checkpoint.name} does not fit the run's model configuration ({reason})"
        ) from None
    return tensors


MODES = ("greedy", "sample")


def _sim_returns(tensors: dict, config: dict, greedy: bool, episodes: int, seed: int, host_memory: bool) -> list[float]:
    """Returns of one checkpoint's actors on simulator episodes k = 0, 1, ... on a backend seeded seed + k: the same
    episodes for every candidate (and those `cage-sf evaluate --seed=seed` plays). They are played side by side
    through the adapter, which keeps the memory and the masks the exported agents keep, with one forward pass a
    step for all their agents (about 6x faster than `cage_sf.evaluate.play`, agent by agent)."""
    from cage_sf.adapter import AGENTS_PER_ENV, FEATURES, CC4VectorEnv
    from cage_sf.agent.cc4_agent import CC4Policy

    torch.set_num_threads(1)
    torch.manual_seed(seed)  # sampled actions too repeat on the same seed
    actors = CC4Policy(config, tensors).actors
    seeds = itertools.count(seed)
    env = CC4VectorEnv(
        lambda: make_backend("sim", seed=next(seeds)), episodes, 60.0, host_memory, messages=config["messages"]
    )
    obs, _ = env.reset()
    kinds = np.tile([cc4.agent_type(a) for a in cc4.AGENTS], episodes)
    returns: dict[int, float] = {}
    while len(returns) < episodes:
        actions = np.zeros((len(kinds), 1 + config["messages"] * cc4.MESSAGE_LENGTH), np.int64)
        for kind in (cc4.SMALL, cc4.LARGE):
            rows, n = kinds == kind, cc4.NUM_ACTIONS[kind]
            valid = torch.from_numpy(obs["valid_actions"][rows, :n])
            with torch.no_grad():
                out = actors.logits(torch.from_numpy(obs["obs"][rows, : FEATURES[kind]]), valid, kind)
            logits = out[:, :n].masked_fill(valid < 0.5, config["masked_logit"])
            actions[rows, 0] = _choose(logits, greedy)
            if config["messages"]:  # the bits each agent sends, chosen every step as CC4Agent chooses them
                actions[rows, 1:] = _choose(out[:, n:].view(len(out), -1, 2), greedy)
        obs, _, _, _, infos = env.step(actions if config["messages"] else actions[:, 0])
        for k, info in enumerate(infos[::AGENTS_PER_ENV]):
            if "episode_extra_stats" in info and k not in returns:
                if info["true_objective"] is None:
                    raise RuntimeError(f"simulator episode {k} failed while scoring a checkpoint (see the log)")
                returns[k] = info["true_objective"]
    return [returns[k] for k in range(episodes)]


def _choose(logits: torch.Tensor, greedy: bool) -> np.ndarray:
    """The likeliest or a sampled choice along the last axis."""
    if greedy:
        return logits.argmax(dim=-1).numpy()
    return torch.distributions.Categorical(logits=logits).sample().numpy()


def select(
    candidates: dict[Path, dict], modes: list[str], config: dict, episodes: int, seed: int, host_memory: bool = True
) -> list[dict]:
    """Score every (checkpoint -> its actor tensors, action mode) on the same simulator episodes, best first, each
    with its paired difference to the best (mean and SE over the episodes): SF's best checkpoint is the maximum of
    noisy 100-episode training windows (a winner's curse), and whether greedy or sampled actions play better
    depends on the policy. Matched episodes make the differences between candidates far less noisy than their
    means."""
    from cage_sf.stats import mean_and_sem, paired_difference

    scored = {}
    jobs = [(checkpoint, mode) for checkpoint in candidates for mode in modes]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(len(jobs), os.cpu_count() or 1), mp_context=context) as pool:
        futures = {
            pool.submit(_sim_returns, candidates[job[0]], config, job[1] == "greedy", episodes, seed, host_memory): job
            for job in jobs
        }
        for future in as_completed(futures):
            scored[futures[future]] = future.result()
            print(f"  scored {len(scored)}/{len(jobs)}", flush=True)
    ranked = sorted(scored, key=lambda job: -mean(scored[job]))
    best = scored[ranked[0]]
    rows = []
    for rank, (checkpoint, mode) in enumerate(ranked):
        returns = scored[checkpoint, mode]
        (average, sem), (difference, se) = mean_and_sem(returns), paired_difference(returns, best)
        rows.append({"checkpoint": checkpoint.name, "mode": mode, "mean": average, "sem": sem,
                     "difference": difference, "difference_se": se})  # fmt: skip
        versus = "the best" if rank == 0 else f"{difference:+.1f} ± {se:.1f} (paired, vs the best)"
        print(f"  {checkpoint.name} {mode}: {average:.1f} ± {sem:.1f}, {versus}", flush=True)
    return rows


def rescore(tensors: dict, mode: str, config: dict, episodes: int, seed: int, host_memory: bool) -> dict:
    """The chosen candidate's score on episodes that did not choose it (seeds seed + k): an unbiased estimate, where
    its selection score is the maximum of several noisy ones (one run's sampled pick read 19 points high)."""
    from cage_sf.stats import mean_and_sem

    average, sem = mean_and_sem(_sim_returns(tensors, config, mode == "greedy", episodes, seed, host_memory))
    return {"seed": seed, "episodes": episodes, "mean": average, "sem": sem}


def candidate_checkpoints(run: Path) -> list[Path]:
    """The kept regular checkpoints and the best one, unless a regular one holds the same train step: the same
    weights (SF names both `*_{train_step}_{env_steps}...`), which selection would otherwise score twice."""
    regular = sorted((run / "checkpoint_p0").glob("checkpoint_*.pth"))
    best = sorted((run / "checkpoint_p0").glob("best_*.pth"))[-1:]
    steps = {path.name.split("_")[1] for path in regular}
    best = [path for path in best if path.name.split("_")[1] not in steps]
    if not regular + best:
        raise UsageError(f"no checkpoint in {run / 'checkpoint_p0'}")
    return regular + best


def export(experiment: str, out: Path, *, train_dir: str = "runs", checkpoint: str = "auto", mode: str = "auto",
           name: str = "cage-sf", team: str = "cage-sf", technique: str = "APPO + V-trace (Sample Factory)",
           select_episodes: int = 200, select_seed: int = 1_000_000, as_zip: bool = False,
           force: bool = False) -> Path:  # fmt: skip
    """`checkpoint` best, latest, a path or auto; `mode` greedy, sample or auto: each `auto` is decided by
    `select` on the same `select_episodes` simulator episodes for every candidate (seeds select_seed + k, apart
    from `cage-sf evaluate`'s usual ones)."""
    if mode not in (*MODES, "auto"):
        raise UsageError(f"unknown mode {mode!r}; choose greedy, sample or auto")
    if select_episodes < 1:
        raise UsageError(f"select_episodes must be at least 1 (got {select_episodes})")
    run = run_dir(experiment, train_dir)
    cfg = json.loads((run / "config.json").read_text())
    check_run_memory(run, cfg, "export")
    if out.exists() and (out.is_file() or any(out.iterdir())) and not force:
        raise UsageError(f"output {out} is not empty (use --force to overwrite)")
    config = model_config(cfg)
    paths = candidate_checkpoints(run) if checkpoint == "auto" else [find_checkpoint(run, checkpoint)]
    candidates = {path: actor_tensors(path, config) for path in paths}  # checks every candidate fits
    modes = list(MODES) if mode == "auto" else [mode]
    selection = None
    if len(candidates) * len(modes) > 1:
        print(
            f"choosing among {len(candidates)} checkpoint(s) x {len(modes)} action mode(s) on the same "
            f"{select_episodes} simulator episodes (mean ± SEM, paired difference to the best ± SE):"
        )
        host_memory = cfg.get("host_memory", True)
        selection = select(candidates, modes, config, select_episodes, select_seed, host_memory)
        source = next(path for path in paths if path.name == selection[0]["checkpoint"])
        mode = selection[0]["mode"]
        fresh = rescore(candidates[source], mode, config, select_episodes, select_seed + select_episodes, host_memory)
        print(
            f"  the choice on {select_episodes} fresh episodes (seeds {fresh['seed']}+): {fresh['mean']:.1f} ± "
            f"{fresh['sem']:.1f} (the best of {len(selection)} reads high on the episodes that chose it)",
            flush=True,
        )
    else:
        source, mode, fresh = paths[0], modes[0], None
    config |= {
        "greedy": mode == "greedy",
        "submission": {"name": name, "team": team, "technique": technique},
        "source": {"run": str(run), "checkpoint": source.name, "selection": selection, "fresh": fresh},
    }
    tensors = candidates[source]

    package = out / "submission" if as_zip else out
    if out.exists() and force:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    package.mkdir(parents=True)
    for filename in RUNTIME_FILES:
        shutil.copy(AGENT_RUNTIME / filename, package / filename)
    save_file(tensors, str(package / "model.safetensors"))
    (package / "model.json").write_text(json.dumps(config, indent=1))
    if not as_zip:
        return out
    (package / "__init__.py").write_text("")
    archive = out / "submission.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.iterdir()):
            zf.write(path, f"submission/{path.name}")
    return archive
