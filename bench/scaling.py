"""Throughput against the number of rollout workers and the vector size, on whatever machine it runs on.

    python bench/scaling.py                                   # workers 1..cores (doubling), vector sizes 8 16 32
    python bench/scaling.py --workers 8 16 32 --vector_sizes 16 32 --preset=default --device=gpu --seconds=90

For each (workers, vector size), one after the other on the same cores:
  sampler   `workers` processes each step a vector of simulators and choose every action with the preset's
            actor network (the inference a rollout needs, on the CPU, in the same process): what sampling costs
            without a learner or Sample Factory's queues;
  train     Sample Factory trains the preset with `--num_workers=workers --vector_size=V` (the steady-state
            rate of its frame counter, start-up excluded: bench/train_throughput.py);
and once per worker count, `raw`: `workers` processes stepping the simulator with random valid actions.
Rates are agent steps/s (5 per env step); each row gives train / raw and sampler / raw. The table is printed as
Markdown (for docs/throughput.md) and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import torch
from train_throughput import AGENTS_PER_ENV, raw_agent_steps_per_s, train_agent_steps_per_s

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def sampled_env_steps_in(preset: str, vector_size: int, seconds: float, seed: int) -> int:
    """Env steps one process does in `seconds` stepping `vector_size` simulators with actions its actors sample."""
    from gymnasium import spaces

    from cage_sf.adapter import NUM_ACTIONS, CC4VectorEnv, observation_space
    from cage_sf.backends import make_backend
    from cage_sf.models import CC4ActorCritic
    from cage_sf.train import resolve_config

    torch.set_num_threads(1)  # as a rollout worker runs
    cfg = resolve_config(preset, ["--backend=sim", "--device=cpu"])
    env = CC4VectorEnv(lambda: make_backend("sim"), vector_size, step_timeout_s=60)
    model = CC4ActorCritic(observation_space(), spaces.Discrete(NUM_ACTIONS), cfg).eval()
    obs, _ = env.reset(seed=seed)
    steps, deadline = 0, time.perf_counter() + seconds
    with torch.inference_mode():
        while time.perf_counter() < deadline:
            batch = {key: torch.as_tensor(value) for key, value in obs.items()}
            actions = model(batch, torch.zeros(len(batch["obs"]), 1))["actions"]
            obs, *_ = env.step(actions.numpy())
            steps += vector_size
    return steps


def sampler_agent_steps_per_s(preset: str, workers: int, vector_size: int, seconds: float) -> float:
    jobs = [(preset, vector_size, seconds, seed) for seed in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        steps = pool.starmap(sampled_env_steps_in, jobs)
    return AGENTS_PER_ENV * sum(steps) / seconds


def doubling(limit: int) -> list[int]:
    counts = [1]
    while counts[-1] * 2 <= limit:
        counts.append(counts[-1] * 2)
    return counts if counts[-1] == limit else [*counts, limit]


def table(rows: list[dict]) -> str:
    lines = [
        "| workers | vector size | sampler | train | raw simulator | train / raw | sampler / raw |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['vector_size']} | {r['sampler']:,.0f} | {r['train']:,.0f} | {r['raw']:,.0f} "
            f"| {r['train'] / r['raw']:.2f} | {r['sampler'] / r['raw']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=doubling(os.cpu_count() or 1))
    parser.add_argument("--vector_sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--seconds", type=float, default=60, help="per measurement")
    parser.add_argument("--preset", default="default")
    args, overrides = parser.parse_known_args(argv)  # the rest (--name=value) goes to every training

    rows = []
    for workers in args.workers:
        print(f"raw: {workers} processes, {args.seconds:.0f}s ...", flush=True)
        raw = raw_agent_steps_per_s("sim", workers, args.seconds, tuned_gc=True)
        for vector_size in args.vector_sizes:
            print(f"sampler, train: {workers} workers, vector size {vector_size} ...", flush=True)
            sampler = sampler_agent_steps_per_s(args.preset, workers, vector_size, args.seconds)
            extra = [f"--vector_size={vector_size}", *overrides]
            train = train_agent_steps_per_s("sim", workers, args.seconds, args.preset, extra)
            rows.append(dict(workers=workers, vector_size=vector_size, sampler=sampler, train=train, raw=raw))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    print(json.dumps({"preset": args.preset, "seconds": args.seconds, "overrides": overrides, "cpus": os.cpu_count(),
                      "rows": [{k: round(v, 1) for k, v in r.items()} for r in rows]}))  # fmt: skip


if __name__ == "__main__":
    main()
