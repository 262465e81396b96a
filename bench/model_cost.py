"""The learner's cost per sample of each actor network, and of the entity actor with one team critic, in one run:
forward + backward of the whole actor-critic (actors, critics, V-trace-style value use) on training-shaped batches
of real simulator observations, with the `default` preset's other model settings (its factored head and privileged
critic).

    python bench/model_cost.py                  # mlp and entity, batch 2000, CPU, 1 thread
    python bench/model_cost.py --threads=2 --device=cuda

Batches hold the five agents of each env step (four small-subnet rows, one large-subnet row), as training's do.
Prints microseconds per sample for each and, last, one JSON object with the ratios entity / mlp and entity /
entity with `--team_critic` (one critic for all five agents instead of one per agent type).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gymnasium import spaces  # noqa: E402

from cage_sf.adapter import NUM_ACTIONS, CC4VectorEnv, observation_space  # noqa: E402
from cage_sf.backends import make_backend  # noqa: E402
from cage_sf.models import CC4ActorCritic  # noqa: E402
from cage_sf.params import ACTORS  # noqa: E402
from cage_sf.train import resolve_config  # noqa: E402


def observations(rows: int, privileged: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """`rows` agent observations from a vector of simulators stepped with random valid actions (`privileged`: with
    the true state the privileged critic reads)."""
    env = CC4VectorEnv(lambda: make_backend("sim"), num_envs=rows // 5, step_timeout_s=60, privileged=privileged)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        obs, *_ = env.step(np.argmax(rng.random(obs["valid_actions"].shape) * obs["valid_actions"], axis=1))
    return {key: torch.as_tensor(value.copy()) for key, value in obs.items()}


def microseconds_per_sample(model: CC4ActorCritic, batch: dict, repeats: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    rows = batch["obs"].shape[0]

    def step() -> None:
        head = model.forward_head(batch)
        core, _ = model.forward_core(head, torch.zeros(rows, 1, device=head.device))
        result = model.forward_tail(core, values_only=False, sample_actions=False)
        loss = result["action_logits"].logsumexp(dim=1).mean() + result["values"].square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    if batch["obs"].is_cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    if batch["obs"].is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats / rows * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2000, help="samples per learner batch (a multiple of 5)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {actor: [f"--actor={actor}"] for actor in ACTORS}
    variants["entity, team critic"] = ["--actor=entity", "--team_critic=True"]
    configs = {name: resolve_config("default", ["--backend=sim", *argv]) for name, argv in variants.items()}
    privileged = configs[ACTORS[0]].privileged_critic  # the default preset's critic, the same for every variant
    batch = {key: value.to(args.device) for key, value in observations(args.batch, privileged).items()}
    costs = {}
    for name, cfg in configs.items():
        torch.manual_seed(0)
        model = CC4ActorCritic(observation_space(privileged), spaces.Discrete(NUM_ACTIONS), cfg).to(args.device)
        costs[name] = microseconds_per_sample(model, batch, args.repeats)
        print(f"{name}: {costs[name]:.1f} us per sample", flush=True)
    print(json.dumps({
        "us_per_sample": {k: round(v, 2) for k, v in costs.items()},
        "ratio": round(costs["entity"] / costs["mlp"], 3),
        "team_critic_ratio": round(costs["entity"] / costs["entity, team critic"], 3),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
