"""CybORG's own `evaluation.py` run in parallel processes and pooled, for a submission and (cached) for a scripted
defender: the CybORG half of the learning benchmark (`bench/learning.py`).

CybORG's `evaluation.py` plays `--max-eps` episodes from one `--seed` and writes the mean and stdev
(`summary.json`) and every episode's return (`total reward:` lines of `full.txt`). The benchmark splits the
episodes into chunks of a few episodes, each one process with its own seed (base seed + chunk index), runs
`workers` of them at a time and pools them; the chunks make the progress bar move every few episodes, as a
process writes nothing until its last episode.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from cage_sf.stats import Group, pooled

REPO = Path(__file__).resolve().parent.parent
CACHE_DIR = Path.home() / ".cache" / "cage-sf" / "learning-bench"
TOTAL_REWARD = re.compile(r"^ total reward: (\S+)$", re.MULTILINE)


def cyborg_plan(episodes: int, workers: int, seed: int, chunk: int = 5) -> list[tuple[int, int]]:
    """(seed, episodes) of each evaluation.py process: at least `workers` processes when there are episodes
    enough, about `chunk` episodes each, and never fewer than 2 per process (evaluation.py takes a stdev)."""
    if episodes < 2:
        raise ValueError("CybORG's evaluation.py needs at least 2 episodes per process")
    count = max(min(workers, episodes // 2), math.ceil(episodes / max(chunk, 2)))
    count = min(count, episodes // 2)
    return [(seed + k, episodes // count + (k < episodes % count)) for k in range(count)]


def read_cyborg_output(out: Path, episodes: int) -> tuple[Group, list[float] | None]:
    """One evaluation.py process's result: its per-episode returns from full.txt when they are all there,
    else the group statistics of its summary.json."""
    full = out / "full.txt"
    if full.is_file():
        returns = [float(r) for r in TOTAL_REWARD.findall(full.read_text())]
        if len(returns) == episodes:
            return Group.of(returns), returns
    summary = json.loads((out / "summary.json").read_text())
    return Group(summary["reward"]["mean"], summary["reward"]["stdev"], summary["parameters"]["max_episodes"]), None


@dataclass
class CybORGResult:
    mean: float
    sem: float
    episodes: int
    returns: list[float] | None  # every episode's return, in plan order, when all processes wrote them
    plan: list[tuple[int, int]]

    def summary(self) -> dict:
        return {"mean": self.mean, "sem": self.sem, "episodes": self.episodes}


def _subprocess_env() -> dict[str, str]:
    """A scripted submission imports cage_sf: put this checkout on the evaluation processes' path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def run_cyborg_evaluation(
    submission: Path, out: Path, plan: list[tuple[int, int]], workers: int, desc: str = "CybORG evaluation"
) -> CybORGResult:
    """Run `python -m CybORG.Evaluation.evaluation --seed=S --max-eps=N SUBMISSION out/seed_S` for every
    (S, N) of the plan, `workers` at a time, with a progress bar over finished episodes."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    pending = list(plan)
    running: dict[tuple[int, int], tuple[subprocess.Popen, object]] = {}
    results: dict[tuple[int, int], tuple[Group, list[float] | None]] = {}
    total = sum(n for _, n in plan)
    bar = tqdm(total=total, desc=desc, unit="episode", file=sys.stderr)
    try:
        while pending or running:
            while pending and len(running) < workers:
                seed, n = job = pending.pop(0)
                target = out / f"seed_{seed}"
                log = (out / f"seed_{seed}.log").open("w")
                command = [
                    sys.executable, "-m", "CybORG.Evaluation.evaluation", f"--seed={seed}", f"--max-eps={n}",
                    str(submission.resolve()), str(target),
                ]  # fmt: skip
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_subprocess_env())
                running[job] = (process, log)
            time.sleep(1.0)
            for job, (process, log) in list(running.items()):
                if process.poll() is None:
                    continue
                log.close()
                del running[job]
                seed, n = job
                if process.returncode != 0:
                    tail = (out / f"seed_{seed}.log").read_text()[-2000:]
                    raise RuntimeError(f"CybORG evaluation.py (seed {seed}) exited {process.returncode}:\n{tail}")
                results[job] = read_cyborg_output(out / f"seed_{seed}", n)
                for bulky in ("full.txt", "actions.txt"):  # every observation of every step: tens of MB
                    (out / f"seed_{seed}" / bulky).unlink(missing_ok=True)
                bar.update(n)
            bar.set_postfix(processes=len(running))
    finally:
        bar.close()
        for process, log in running.values():  # interrupted or failed: stop the others
            process.terminate()
            process.wait()
            log.close()
    groups = [results[job][0] for job in plan]
    m, sem, n = pooled(groups)
    per_episode = [results[job][1] for job in plan]
    returns = None if any(r is None for r in per_episode) else [r for rs in per_episode for r in rs]
    result = CybORGResult(m, sem, n, returns, plan)
    (out / "episodes.json").write_text(json.dumps(asdict(result)))
    return result


def _policy_version() -> str:
    names = ("scripted.py", "scripted_submission.py", "cc4.py", "agent/cc4_agent.py")
    sources = [REPO / "cage_sf" / name for name in (*names, "agent/cc4_memory.py")]
    return hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]


def scripted_cache_path(policy: str, plan: list[tuple[int, int]], cache_dir: Path = CACHE_DIR) -> Path:
    """Keyed by the policy, the episodes and their seeds, and the code the scripted agents run."""
    key = hashlib.sha256(json.dumps([policy, plan, _policy_version()]).encode()).hexdigest()[:16]
    episodes = sum(n for _, n in plan)
    return cache_dir / f"{policy.replace(':', '_')}-{episodes}eps-seed{plan[0][0]}-{key}.json"


def scripted_cyborg(
    policy: str, plan: list[tuple[int, int]], workers: int, work_dir: Path, cache_dir: Path = CACHE_DIR
) -> tuple[CybORGResult, bool]:
    """A scripted defender on CybORG through evaluation.py, from the cache when it holds the same run.
    Returns the result and whether it came from the cache."""
    from cage_sf.scripted_submission import write_submission

    cached = scripted_cache_path(policy, plan, cache_dir)
    if cached.is_file():
        data = json.loads(cached.read_text())
        data.pop("policy", None)
        return CybORGResult(**(data | {"plan": [tuple(p) for p in data["plan"]]})), True
    submission = write_submission(work_dir / "submission", policy)
    result = run_cyborg_evaluation(submission, work_dir / "evaluation", plan, workers, desc=f"CybORG: {policy}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(asdict(result) | {"policy": policy}))
    return result, False
