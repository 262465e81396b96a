"""The `cage-sf` command. Argument parsing only; the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from cage_sf.console import sf_log_muted
from cage_sf.errors import RunFailure, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one line on stderr (no usage block), exit 2; subcommands' parsers are this class too."""

    def error(self, message: str):
        self.exit(2, f"cage-sf: error: {message} (see `{self.prog} --help`)\n")


def _count(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def _positive(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0 (got {text})")
    return value


def _parser() -> argparse.ArgumentParser:
    from cage_sf.presets import available_presets

    parser = _Parser(prog="cage-sf", description="Train CAGE Challenge 4 blue agents with Sample Factory.")
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
    parity = commands.add_parser("parity", help="our simulator against real CybORG on docs/cc4.md §11's statistics")
    parity.add_argument(
        "--policy",
        default="sleep",
        help="sleep, random, random-valid, remove-restore, restore-decoy, analyse-restore, remove-analyse-restore or "
        "module:function (cage_sf/scripted.py)",
    )
    parity.add_argument("--episodes", type=_count, default=100, help="CybORG episodes (about 20 s each)")
    parity.add_argument("--sim-episodes", type=_count, help="simulator episodes (default: 10x --episodes)")
    parity.add_argument("--margin", type=_positive, default=350.0, help="TOST equivalence margin for the return")
    parity.add_argument("--out", type=Path, help="JSON report (default: parity_<policy>.json)")
    parity.add_argument(
        "--replicate",
        action="store_true",
        help="re-test the statistics outside 2 SEM on as many fresh episodes of both engines (seeds N..2N-1)",
    )
    parity.add_argument("--workers", type=_count, default=os.cpu_count(), help="parallel episode processes")
    parity.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "cage-sf" / "parity",
        help="where CybORG episodes are cached",
    )
    exporter = commands.add_parser("export", help="write a CAGE Challenge 4 submission from a run's checkpoint")
    exporter.add_argument("experiment", help="experiment name under --train_dir, or a run directory")
    exporter.add_argument("--out", type=Path, required=True, help="output directory (must be empty unless --force)")
    exporter.add_argument("--zip", action="store_true", help="also write OUT/submission.zip (submission/submission.py)")
    exporter.add_argument(
        "--checkpoint",
        default="auto",
        help="auto (the kept checkpoints and the best one, scored on the simulator), best, latest or a path",
    )
    exporter.add_argument(
        "--mode",
        default="auto",
        choices=["auto", "greedy", "sample"],
        help="greedy or sampled actions; auto = whichever scores better on the simulator",
    )
    exporter.add_argument(
        "--select-episodes",
        type=_count,
        default=200,
        help="simulator episodes per candidate when choosing (auto); every candidate plays the same ones",
    )
    exporter.add_argument("--train_dir", default="runs")
    exporter.add_argument("--name", default="cage-sf")
    exporter.add_argument("--team", default="cage-sf")
    exporter.add_argument("--technique", default="APPO + V-trace (Sample Factory)")
    exporter.add_argument("--force", action="store_true", help="overwrite a non-empty output")
    evaluator = commands.add_parser("evaluate", help="run an exported submission through the official loop")
    evaluator.add_argument("submission", type=Path, help="an exported directory or submission.zip")
    evaluator.add_argument("--episodes", type=_count, default=100)
    evaluator.add_argument("--seed", type=int, default=None)
    evaluator.add_argument("--backend", default="auto", choices=["auto", "cyborg", "sim"])
    evaluator.add_argument("--out", type=Path, default=Path("evaluation"))
    evaluator.add_argument(
        "--versus",
        metavar="POLICY",
        help="also play this scripted defender (e.g. remove-analyse-restore) or this other submission (a path) on "
        "the same seeded episodes and print the paired difference (needs --seed)",
    )
    evaluator.add_argument(
        "--workers", type=_count, default=os.cpu_count(), help="processes that play seeded episodes side by side"
    )
    evaluator.add_argument(
        "--exported_mode_only",
        action="store_true",
        help="play only the action mode the submission was exported with, not also the other (greedy or sampled)",
    )
    plot = commands.add_parser("plot", help="learning curves of a run as a PNG (also written after training)")
    plot.add_argument("experiment", help="experiment name under --train_dir, or a run directory")
    plot.add_argument("--train_dir", default="runs")
    plot.add_argument("--out", type=Path, help="PNG path (default: <run>/learning_curves.png)")
    plot.add_argument(
        "--window_env_steps",
        type=_count,
        default=250_000,
        help="also print the training return per window of this many env steps and its largest fall",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """0 on success; a usage error is one line on stderr and exit 2, a failed run one line and exit 1."""
    args = _parser().parse_args(argv)
    try:
        with contextlib.nullcontext() if args.command == "train" else sf_log_muted():  # only a run shows SF's log
            return _run(args)
    except UsageError as exc:
        print(f"cage-sf: error: {exc}", file=sys.stderr)
        return 2
    except RunFailure as exc:
        print(f"cage-sf: run failed: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.command == "train":
        from cage_sf.train import train

        return train(args.preset, args.overrides)
    if args.command == "parity":
        from cage_sf.parity import run_parity

        out = args.out or Path(f"parity_{args.policy.replace(':', '_')}.json")
        sim_episodes = args.sim_episodes or 10 * args.episodes
        run_parity(
            args.policy, args.episodes, sim_episodes, args.margin, out, args.workers, args.cache_dir,
            replication=args.replicate,
        )  # fmt: skip
    if args.command == "export":
        from cage_sf.export import export

        written = export(
            args.experiment, args.out, train_dir=args.train_dir, checkpoint=args.checkpoint, name=args.name,
            team=args.team, technique=args.technique, mode=args.mode, select_episodes=args.select_episodes,
            as_zip=args.zip, force=args.force,
        )  # fmt: skip
        print(f"submission written to {written}")
    if args.command == "evaluate":
        from cage_sf.evaluate import evaluate

        evaluate(
            args.submission,
            args.episodes,
            args.seed,
            args.backend,
            args.out,
            args.versus,
            args.workers,
            other_mode=not args.exported_mode_only,
        )
    if args.command == "plot":
        from cage_sf.plots import plot_learning_curves, print_windows
        from cage_sf.runs import run_dir

        run = run_dir(args.experiment, args.train_dir)
        print(f"written {plot_learning_curves(run, args.out or run / 'learning_curves.png')}")
        print_windows(run, args.window_env_steps)
    if args.command == "options":
        from cage_sf.presets import build_parser

        build_parser().print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
