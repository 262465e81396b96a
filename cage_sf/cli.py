"""The `cage-sf` command. Argument parsing only; the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import sys

from cage_sf.errors import UsageError


def _parser() -> argparse.ArgumentParser:
    from cage_sf.presets import available_presets

    parser = argparse.ArgumentParser(
        prog="cage-sf", description="Train CAGE Challenge 4 blue agents with Sample Factory."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train from a preset",
        description="Train from a preset in configs/ (or a YAML path). Overrides use Sample Factory argument "
        "names, e.g. --num_workers=8 --with_wandb=True, and win over the preset.",
    )
    train.add_argument("preset", help=f"one of: {', '.join(available_presets())}, or a path to a YAML preset")
    train.add_argument("overrides", nargs=argparse.REMAINDER, help="--name=value ...")
    commands.add_parser("options", help="list every option a preset or override may set, with its default")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "train":
            from cage_sf.train import train

            return train(args.preset, args.overrides)
        if args.command == "options":
            from cage_sf.presets import build_parser

            build_parser().print_help()
    except UsageError as exc:
        print(f"cage-sf: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
