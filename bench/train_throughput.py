"""Training throughput against a baseline, both measured in one run on the same machine.

    python bench/train_throughput.py --backend=cyborg --workers=2 --seconds=120
    python bench/train_throughput.py --backend=sim --baseline=synthetic --workers=2 --seconds=60
    python bench/train_throughput.py --backend=cyborg --num_envs_per_worker=2   # other args: training overrides

train: Sample Factory trains (preset, `--num_workers=workers`) for `seconds`; its steady-state rate is read
from the run's own frame counter (start-up excluded). Baselines:
  raw        `workers` processes step the backend with uniformly random valid actions: how much of the
             env's own speed training keeps. Training's env factory tunes the garbage collector, which makes
             CybORG itself faster; --raw_gc_tuned gives the raw processes the same settings, so the ratio
             then shows the pipeline's own overhead alone;
  synthetic  the same training on the synthetic env (CC4's shapes, near-zero cost): how close training
             on this backend comes to Sample Factory's own ceiling on this machine.
All rates count agent steps (5 per env step). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import re
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
from stepping import env_steps_in

REPO = Path(__file__).resolve().parent.parent
AGENTS_PER_ENV = 5


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


def train_agent_steps_per_s(backend: str, workers: int, seconds: float, preset: str, overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as train_dir:
        command = [
            sys.executable, "-m", "cage_sf", "train", preset, f"--backend={backend}", f"--num_workers={workers}",
            f"--train_dir={train_dir}", f"--train_for_seconds={int(seconds)}", "--train_for_env_steps=10000000000",
            *overrides,
        ]  # fmt: skip
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"training failed:\n{result.stderr[-3000:]}")
        return steady_state_rate(result.stdout + result.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="cyborg", choices=["cyborg", "sim", "synthetic"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--preset", default="impala-seed")
    parser.add_argument("--baseline", default="raw", choices=["raw", "synthetic"])
    parser.add_argument(
        "--raw_gc_tuned",
        action="store_true",
        help="raw processes get training's garbage-collector settings too: isolates the pipeline's own overhead",
    )
    args, overrides = parser.parse_known_args()  # the rest (--name=value) goes to both trainings as overrides

    if args.baseline == "raw":
        print(f"raw: {args.workers} processes stepping {args.backend} for {args.seconds:.0f}s ...", flush=True)
        baseline = raw_agent_steps_per_s(args.backend, args.workers, args.seconds, args.raw_gc_tuned)
    else:
        print(f"synthetic: training, {args.workers} workers, {args.seconds:.0f}s ...", flush=True)
        baseline = train_agent_steps_per_s("synthetic", args.workers, args.seconds, args.preset, overrides)
    print(f"{args.baseline}: {baseline:.1f} agent-steps/s", flush=True)
    print(f"train: {args.backend}, preset {args.preset}, {args.workers} workers, {args.seconds:.0f}s ...", flush=True)
    trained = train_agent_steps_per_s(args.backend, args.workers, args.seconds, args.preset, overrides)
    print(f"train: {trained:.1f} agent-steps/s", flush=True)
    baseline_key = "raw_agent_steps_per_s" if args.baseline == "raw" else "synthetic_train_agent_steps_per_s"
    print(json.dumps({
        "backend": args.backend, "workers": args.workers, "seconds": args.seconds, "preset": args.preset,
        "raw_gc_tuned": args.raw_gc_tuned, "overrides": overrides,
        "train_agent_steps_per_s": round(trained, 1), baseline_key: round(baseline, 1),
        "ratio": round(trained / baseline, 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
