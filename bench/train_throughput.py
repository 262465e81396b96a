"""Training throughput on the batched path against the non-batched path and the raw env, in one run.

    python bench/train_throughput.py --backend=sim --workers=2 --seconds=120
    python bench/train_throughput.py --backend=cyborg --workers=2 --seconds=120
    python bench/train_throughput.py --backend=sim --baseline_ref=ecdaa32   # non-batched path of an older commit
    python bench/train_throughput.py --backend=sim --vector_size=32   # other args: overrides of both trainings
    python bench/train_throughput.py --preset=leaderboard --before_ref=main   # a change against the code before it

Three measurements on the same cores, one after the other:
  train        Sample Factory trains the preset (batched sampling over vectors of CC4 envs) with
               `--num_workers=workers` for `seconds`; the steady-state rate is read from the run's own frame
               counter (start-up excluded);
  nonbatched   the same with non-batched sampling, one CC4 env per SF env, 4 per worker (the path before
               batched sampling); with --baseline_ref, that path as the code of a git commit had it (run from a
               temporary worktree, the extra overrides not passed): the speedup over the code before a change;
  before       with --before_ref: the same batched training as the code of a git commit runs it (a temporary
               worktree, the same overrides): a change's speedup over the code before it, on the same box, in
               the same run;
  raw          `workers` processes step the backend with uniformly random valid actions: the env's own speed.
               Training's env factory tunes the garbage collector, which makes CybORG itself faster;
               --raw_gc_tuned gives the raw processes the same settings.
speedup = train / nonbatched; ratio = train / raw; speedup_over_before = train / before. All rates count agent
steps (5 per env step). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
from stepping import env_steps_in

REPO = Path(__file__).resolve().parent.parent
AGENTS_PER_ENV = 5
NONBATCHED = ["--batched_sampling=False", "--num_envs_per_worker=4"]


def raw_agent_steps_per_s(backend: str, workers: int, seconds: float, tuned_gc: bool) -> float:
    jobs = [(backend, "random-valid", seconds, seed, tuned_gc) for seed in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        steps = pool.starmap(env_steps_in, jobs)
    return AGENTS_PER_ENV * sum(steps) / seconds


FRAMES = re.compile(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\].*Total num frames: (\d+)")


def steady_state_rate(log: str) -> float:
    """Frames per second in steady state: the least-squares slope of SF's frame counter over time, from its
    first report with frames > 0 on (start-up excluded). The counter moves in whole training batches, so a
    slope over every report is far steadier than the difference of two reports."""
    points = [(datetime.strptime(t, "%Y-%m-%d %H:%M:%S,%f").timestamp(), int(n)) for t, n in FRAMES.findall(log)]
    points = [p for p in points if p[1] > 0]
    if len(points) < 3:
        raise RuntimeError("training reported fewer than three frame counts; run longer (--seconds)")
    times, frames = np.array(points, dtype=float).T
    return float(np.polyfit(times - times[0], frames, 1)[0])


def train_agent_steps_per_s(
    backend: str, workers: int, seconds: float, preset: str, overrides: list[str], repo: Path = REPO
) -> float:
    with tempfile.TemporaryDirectory() as train_dir:
        command = [
            sys.executable, "-m", "cage_sf", "train", preset, f"--backend={backend}", f"--num_workers={workers}",
            f"--train_dir={train_dir}", f"--train_for_seconds={int(seconds)}", "--train_for_env_steps=10000000000",
            *overrides,
        ]  # fmt: skip
        result = subprocess.run(command, cwd=repo, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"training failed:\n{result.stderr[-3000:]}")
        return steady_state_rate(result.stdout + result.stderr)


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """The code of a git commit in a temporary worktree (removed afterwards)."""
    with tempfile.TemporaryDirectory() as scratch:
        worktree = Path(scratch) / "code"
        git = ["git", "-C", str(REPO), "worktree"]
        subprocess.run([*git, "add", "--detach", str(worktree), ref], check=True, capture_output=True)
        try:
            yield worktree
        finally:
            subprocess.run([*git, "remove", "--force", str(worktree)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="sim", choices=["cyborg", "sim", "synthetic"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--preset", default="impala-seed")
    parser.add_argument("--baseline_ref", help="git commit whose non-batched path is the baseline (default: this code)")
    parser.add_argument("--before_ref", help="git commit whose batched training this code's is compared with")
    parser.add_argument(
        "--raw_gc_tuned",
        action="store_true",
        help="raw processes get training's garbage-collector settings too: isolates the pipeline's own overhead",
    )
    args, overrides = parser.parse_known_args()  # the rest (--name=value) goes to both trainings as overrides

    def train(label: str, extra: list[str], repo: Path = REPO) -> float:
        print(f"{label}: {args.backend}, preset {args.preset}, {args.workers} workers, {args.seconds:.0f}s ...")
        rate = train_agent_steps_per_s(args.backend, args.workers, args.seconds, args.preset, extra, repo)
        print(f"{label}: {rate:.1f} agent-steps/s", flush=True)
        return rate

    trained = train("train (batched)", overrides)
    before = None
    if args.before_ref:
        with checkout(args.before_ref) as worktree:
            before = train(f"train (batched, {args.before_ref})", overrides, worktree)
    if args.baseline_ref:
        with checkout(args.baseline_ref) as worktree:
            nonbatched = train(f"train (non-batched, {args.baseline_ref})", NONBATCHED, worktree)
    else:
        nonbatched = train("train (non-batched)", overrides + NONBATCHED)
    print(f"raw: {args.workers} processes stepping {args.backend} for {args.seconds:.0f}s ...", flush=True)
    raw = raw_agent_steps_per_s(args.backend, args.workers, args.seconds, args.raw_gc_tuned)
    print(f"raw: {raw:.1f} agent-steps/s", flush=True)
    print(json.dumps({
        "backend": args.backend, "workers": args.workers, "seconds": args.seconds, "preset": args.preset,
        "raw_gc_tuned": args.raw_gc_tuned, "overrides": overrides, "baseline_ref": args.baseline_ref,
        "before_ref": args.before_ref, "before_agent_steps_per_s": before and round(before, 1),
        "train_agent_steps_per_s": round(trained, 1), "nonbatched_agent_steps_per_s": round(nonbatched, 1),
        "raw_agent_steps_per_s": round(raw, 1),
        "speedup": round(trained / nonbatched, 3), "ratio": round(trained / raw, 3),
        "speedup_over_before": before and round(trained / before, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
