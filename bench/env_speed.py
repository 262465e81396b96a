"""Simulator speed vs real CybORG, one core each, in one run.

    python bench/env_speed.py --seconds=30 [--policy=random-valid|sleep|...]

Steps our simulator, then (when it is installed) CybORG, for `seconds` each in this process with the
same scripted blue policy. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json

from stepping import env_steps_in

from cage_sf.backends import cyborg_available


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--policy", default="random-valid", help="a policy name of cage_sf.scripted")
    args = parser.parse_args()

    rates = {}
    for backend in ("sim", "cyborg") if cyborg_available() else ("sim",):
        print(f"{backend}: {args.policy} blue policy for {args.seconds:.0f}s ...", flush=True)
        rates[backend] = env_steps_in(backend, args.policy, args.seconds) / args.seconds
        print(f"{backend}: {rates[backend]:.1f} env steps/s", flush=True)
    cyborg = rates.get("cyborg")
    print(json.dumps({
        "policy": args.policy, "seconds": args.seconds,
        "sim_env_steps_per_s": round(rates["sim"], 1),
        "cyborg_env_steps_per_s": None if cyborg is None else round(cyborg, 1),
        "ratio": None if cyborg is None else round(rates["sim"] / cyborg, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
