"""The learning benchmark: train on our simulator, then score the trained policy on the simulator and on real
CybORG with CybORG's own evaluation.py, next to the best scripted defender.

    python bench/learning.py --preset=default --minutes=60
    python bench/learning.py --preset=smoke --env_steps=4000 --cyborg_episodes=4 --workers=2
    python bench/learning.py --preset=default --minutes=60 --num_workers=16   # other --name=value: training overrides

1. train   `./train.sh PRESET --backend=sim` into TRAIN_DIR/EXPERIMENT for --minutes of training time (the
           preset's step limit lifted) or until --env_steps env steps (5 agent steps each); its output streams
2. export  `cage-sf export` (default checkpoint and mode) to TRAIN_DIR/EXPERIMENT-submission
3. sim     `cage-sf evaluate --backend=sim` on --episodes episodes (seed --eval_seed), then beside it, on as many
           simulator episodes (seeds eval_seed + k), the scripted defender --scripted (default: the best the
           project ships) and the oracle, which sees the true state (cage_sf/scripted.py): near the ceiling of a
           defence, about 13 points above remove-analyse-restore on the simulator;
           the trained policy's command mix (each command's share of its decisions) and its paired difference to
           the scripted defender (episode by episode on the same seeds: mean and SE of trained - scripted)
4. CybORG  when CybORG is importable: `python -m CybORG.Evaluation.evaluation` on --cyborg_episodes episodes,
           split into processes of about --cyborg_chunk episodes with seeds eval_seed, eval_seed+1, ...,
           --workers at a time; every episode's return is read back and pooled into a mean and SEM
5. scripted  the scripted defender --scripted (restore-decoy: on 1,000 simulator episodes, seed 0, -1,744 ± 23 SEM;
           remove-restore -2,618 ± 27) through the same CybORG episodes and seeds, as a CybORG submission
           (cage_sf/scripted_submission.py); cached in --cache_dir, since it does not depend on the training;
           the paired difference trained - scripted over episodes of the same process seed and position (CybORG
           reseeds only a process's first episode: the later ones are matched in position, not in state)
6. curves  RUN/learning_bench.png: the run's evaluation-style return against env steps and against training
           time, with the evaluations above as horizontal lines; and how steadily it climbed: the largest fall of
           a 0.25M-env-step window of the training return below the best window before it (a last window the
           run ended in before half of it is left out: cage_sf.plots.split_windows)

Interrupt and resume: Ctrl-C (or `kill`) stops training cleanly; the same command again resumes the run
from its last checkpoint, up to the same total (--minutes counts the training time already in the run's
summaries; a run within 30 s of its budget counts as finished), and redoes the evaluations. A finished run
is not trained again: re-running only re-evaluates (the scripted CybORG result comes from the cache).
Outputs of the evaluations go to RUN/bench/; the last line printed is one JSON object (also RUN/bench/result.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cage_sf.errors import UsageError  # noqa: E402

AGENTS_PER_ENV = 5
SCRIPTED = ("remove-analyse-restore", "analyse-restore", "restore-decoy", "remove-restore", "none")
RESERVED = {
    "backend": "the benchmark trains on our simulator (--backend=sim)",
    "train_for_seconds": "use --minutes",
    "train_for_env_steps": "use --env_steps (env steps, 5 agent steps each)",
}
WINDOW_ENV_STEPS = 250_000  # the training return's windows whose largest fall the summary reports
FINISHED_WITHIN_S = 30.0  # a --minutes run this close to its budget is not resumed: such a session is mostly start-up


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other usage error of the benchmark
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="bench/learning.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--preset", default="default", help="a preset of configs/ or a YAML path")
    parser.add_argument("--minutes", type=float, help="training time in minutes (or --env_steps)")
    parser.add_argument("--env_steps", type=int, help="train until this many env steps (or --minutes)")
    parser.add_argument("--train_dir", default=str(Path.home() / "cage-sf-bench" / "runs"))
    parser.add_argument("--experiment", help="run name (default: learning-<preset>)")
    parser.add_argument("--episodes", type=int, default=100, help="simulator evaluation episodes")
    parser.add_argument("--select_episodes", type=int, default=200, help="export: simulator episodes per candidate")
    parser.add_argument("--eval_seed", type=int, default=0, help="seed of the evaluations (CybORG: first seed)")
    parser.add_argument("--cyborg_episodes", type=int, default=50, help="CybORG episodes per evaluation (0: none)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel CybORG evaluation processes")
    parser.add_argument("--cyborg_chunk", type=int, default=5, help="about this many episodes per CybORG process")
    parser.add_argument("--scripted", default=SCRIPTED[0], choices=SCRIPTED, help="scripted defender to compare")
    parser.add_argument("--cache_dir", default=str(Path.home() / ".cache" / "cage-sf" / "learning-bench"))
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """Options and training overrides, checked; UsageError for anything that makes no sense."""
    from cage_sf.presets import parse_overrides, preset_path

    args, overrides = _parser().parse_known_args(argv)
    if (args.minutes is None) == (args.env_steps is None):
        raise UsageError("give exactly one of --minutes and --env_steps")
    if args.minutes is not None and not (args.minutes > 0 and math.isfinite(args.minutes)):
        raise UsageError(f"--minutes must be positive, not {args.minutes}")
    if args.env_steps is not None and args.env_steps <= 0:
        raise UsageError(f"--env_steps must be positive, not {args.env_steps}")
    if args.episodes < 2:
        raise UsageError(f"--episodes must be at least 2, not {args.episodes}")
    if args.cyborg_episodes != 0 and args.cyborg_episodes < 2:
        raise UsageError(f"--cyborg_episodes must be 0 (no CybORG) or at least 2, not {args.cyborg_episodes}")
    if args.workers < 1 or args.cyborg_chunk < 1:
        raise UsageError("--workers and --cyborg_chunk must be at least 1")
    if preset_path(args.preset) == Path(args.preset):  # unknown preset -> UsageError naming the valid ones
        args.preset = str(Path(args.preset).resolve())  # a YAML path: train.sh runs from the repository root
    for key in parse_overrides(overrides):
        if key in RESERVED:
            raise UsageError(f"--{key} is set by the benchmark: {RESERVED[key]}")
    args.experiment = args.experiment or f"learning-{Path(args.preset).stem}"
    args.train_dir = Path(args.train_dir).expanduser().resolve()  # train.sh runs from the repository root
    args.cache_dir = Path(args.cache_dir).expanduser()
    return args, overrides


# ---- steps ----------------------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


class StepFailed(Exception):
    """A step of the benchmark failed (its own output says why): exit 1."""


_child: subprocess.Popen | None = None


def _terminate(signum, frame) -> None:
    """`kill` stops the benchmark as Ctrl-C does, and a running step with it (training saves its state)."""
    if _child is not None and _child.poll() is None:
        _child.send_signal(signal.SIGTERM)
    signal.default_int_handler(signum, frame)


def stream(command: list[str]) -> int:
    """Run a command with its output on our console. Ctrl-C reaches it too (same process group), and `kill`
    of the benchmark is passed on: either way, wait for it to stop cleanly, then raise Interrupted."""
    global _child
    _child = subprocess.Popen(command, cwd=REPO)
    try:
        return _child.wait()
    except KeyboardInterrupt:
        print("\ninterrupted: waiting for it to stop cleanly ...", file=sys.stderr, flush=True)
        while True:
            try:
                _child.wait()
                break
            except KeyboardInterrupt:  # impatient: a second Ctrl-C
                continue
        raise Interrupted from None
    finally:
        _child = None


def checkpoint_agent_steps(run: Path) -> int:
    """SF's agent-step counter in the name of the run's latest checkpoint (checkpoint_<train step>_<steps>.pth)."""
    found = sorted((run / "checkpoint_p0").glob("checkpoint_*.pth"))
    return int(found[-1].stem.split("_")[2]) if found else 0


def train(args: argparse.Namespace, overrides: list[str], run: Path) -> None:
    from cage_sf.plots import training_seconds

    if args.minutes is not None:
        done = training_seconds(run)
        remaining = 60 * args.minutes - done
        if remaining < FINISHED_WITHIN_S:
            print(f"== train: {run} already holds {done / 60:.1f} min of training: not resumed")
            return
        limits = [f"--train_for_seconds={math.ceil(remaining)}", f"--train_for_env_steps={10**13}"]
    else:
        done = checkpoint_agent_steps(run) // AGENTS_PER_ENV
        if done >= args.env_steps:
            print(f"== train: {run} already holds {done:,} env steps: not resumed")
            return
        limits = [f"--train_for_env_steps={AGENTS_PER_ENV * args.env_steps}", f"--train_for_seconds={10**10}"]
    command = [
        str(REPO / "train.sh"), args.preset, "--backend=sim", f"--train_dir={args.train_dir}",
        f"--experiment={args.experiment}", *limits, *overrides,
    ]  # fmt: skip
    resumed = " (resuming)" if (run / "config.json").is_file() else ""
    print(f"== train{resumed}: {' '.join(command)}", flush=True)
    code = stream(command)
    if code != 0:
        raise StepFailed(f"training exited with status {code}")


def export(args: argparse.Namespace) -> Path:
    submission = args.train_dir / f"{args.experiment}-submission"
    command = [
        sys.executable, "-m", "cage_sf", "export", args.experiment, f"--train_dir={args.train_dir}",
        f"--out={submission}", f"--select-episodes={args.select_episodes}", "--force",
    ]  # fmt: skip
    print(f"== export: cage-sf {' '.join(command[3:])}", flush=True)
    if stream(command) != 0:
        raise StepFailed("cage-sf export failed (its message is above)")
    return submission


def evaluate_sim(args: argparse.Namespace, submission: Path, out: Path) -> dict:
    """The exported policy's simulator episodes (episodes.json: returns, phase_sums, command_mixes)."""
    command = [
        sys.executable, "-m", "cage_sf", "evaluate", str(submission), f"--episodes={args.episodes}",
        f"--seed={args.eval_seed}", "--backend=sim", f"--out={out}",
    ]  # fmt: skip
    print(f"== sim: cage-sf {' '.join(command[3:])}", flush=True)
    if stream(command) != 0:
        raise StepFailed("cage-sf evaluate failed (its message is above)")
    return json.loads((out / "episodes.json").read_text())


def evaluate_policy_sim(args: argparse.Namespace, policy: str) -> list[float]:
    """A policy of cage_sf/scripted.py (the scripted defender, the oracle) on the simulator, as many episodes."""
    from cage_sf.scripted import policy_returns

    print(f"== sim: {policy} on {args.episodes} episodes (seeds {args.eval_seed} + k)", flush=True)
    return policy_returns(policy, args.episodes, args.eval_seed)


def exported_checkpoint(submission: Path) -> str | None:
    try:
        return json.loads((submission / "model.json").read_text())["source"]["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _stat(mean: float, sem: float, episodes: int) -> dict:
    return {"mean": round(mean, 2), "sem": round(sem, 2), "episodes": episodes}


def _paired(a: list[float], b: list[float]) -> dict:
    from cage_sf.stats import paired_difference

    difference, se = paired_difference(a, b)
    return {"mean": round(difference, 2), "se": round(se, 2), "episodes": len(a)}


def _paired_line(difference: dict | None) -> str:
    if not difference:
        return "-"
    mean, se, episodes = difference["mean"], difference["se"], difference["episodes"]
    return f"{mean:+9.1f} ± {se:.1f} (trained - scripted ± SE, {episodes} paired episodes)"


def _line(stat: dict | None) -> str:
    return f"{stat['mean']:9.1f} ± {stat['sem']:.1f} (SEM, {stat['episodes']} episodes)" if stat else "-"


def run_benchmark(args: argparse.Namespace, overrides: list[str]) -> dict:
    from cage_sf import cyborg_evaluation
    from cage_sf.backends import cyborg_available
    from cage_sf.evaluate import mean_command_mix
    from cage_sf.plots import largest_fall, plot_learning_curves, read_series, return_windows, training_seconds
    from cage_sf.stats import mean_and_sem

    run = args.train_dir / args.experiment
    train(args, overrides, run)
    submission = export(args)
    bench = run / "bench"
    sim_episodes = evaluate_sim(args, submission, bench / "sim")
    sim_return = _stat(*mean_and_sem(sim_episodes["returns"]), args.episodes)
    scripted_returns = None if args.scripted == "none" else evaluate_policy_sim(args, args.scripted)
    scripted_sim = scripted_returns and _stat(*mean_and_sem(scripted_returns), args.episodes)
    sim_vs_scripted = scripted_returns and _paired(sim_episodes["returns"], scripted_returns)
    oracle_sim = _stat(*mean_and_sem(evaluate_policy_sim(args, "oracle")), args.episodes)

    cyborg_return = scripted_return = cyborg_vs_scripted = None
    if args.cyborg_episodes and not cyborg_available():
        print("== CybORG: not importable, its evaluations are skipped (see README, 'Real CybORG')", flush=True)
    elif args.cyborg_episodes:
        plan = cyborg_evaluation.cyborg_plan(args.cyborg_episodes, args.workers, args.eval_seed, args.cyborg_chunk)
        print(
            f"== CybORG: evaluation.py on {args.cyborg_episodes} episodes, {len(plan)} processes "
            f"(seeds {plan[0][0]}-{plan[-1][0]}), {min(args.workers, len(plan))} at a time",
            flush=True,
        )
        trained = cyborg_evaluation.run_cyborg_evaluation(
            submission, bench / "cyborg", plan, args.workers, "CybORG: trained"
        )
        cyborg_return = _stat(trained.mean, trained.sem, trained.episodes)
        if args.scripted != "none":
            result, cached = cyborg_evaluation.scripted_cyborg(
                args.scripted, plan, args.workers, bench / f"scripted-{args.scripted}", args.cache_dir
            )
            print(f"== scripted {args.scripted} on CybORG: {'from the cache' if cached else 'measured and cached'}")
            scripted_return = {"policy": args.scripted, **_stat(result.mean, result.sem, result.episodes)}
            if trained.returns and result.returns:  # every episode's return read back, both in plan order
                cyborg_vs_scripted = _paired(trained.returns, result.returns)

    references = {f"sim, {args.episodes} episodes": sim_return["mean"], "sim, oracle": oracle_sim["mean"]}
    if cyborg_return:
        references[f"CybORG, {cyborg_return['episodes']} episodes"] = cyborg_return["mean"]
    if scripted_return:
        references[f"CybORG, scripted {args.scripted}"] = scripted_return["mean"]
    curves = plot_learning_curves(run, run / "learning_bench.png", wall_clock=True, references=references)

    fall = largest_fall(return_windows(run, WINDOW_ENV_STEPS))
    steps = checkpoint_agent_steps(run)
    if not steps:
        logged = read_series(run, "cc4/eval_return").steps
        steps = int(logged.max()) if len(logged) else 0
    result = {
        "preset": args.preset,
        "env_steps": steps // AGENTS_PER_ENV,
        "minutes": round(training_seconds(run) / 60, 2),
        "sim_return": sim_return,
        "cyborg_return": cyborg_return,
        "scripted_cyborg_return": scripted_return,
        "scripted_sim_return": scripted_sim and {"policy": args.scripted, **scripted_sim},
        "oracle_sim_return": oracle_sim,
        "sim_minus_scripted": sim_vs_scripted,
        "cyborg_minus_scripted": cyborg_vs_scripted,
        "command_mix": {c: round(share, 4) for c, share in mean_command_mix(sim_episodes["command_mixes"]).items()},
        "transfer_gap": round(sim_return["mean"] - cyborg_return["mean"], 2) if cyborg_return else None,
        "largest_fall": fall and {"share": fall.share, "best": list(fall.best), "fallen": list(fall.fallen)},
        "run_dir": str(run),
        "submission": str(submission),
        "checkpoint": exported_checkpoint(submission),
        "curves_png": str(curves),
    }
    (bench / "result.json").write_text(json.dumps(result, indent=1))
    return result


def print_summary(result: dict) -> None:
    from cage_sf.evaluate import command_mix_line
    from cage_sf.plots import Fall, describe_fall

    scripted = result["scripted_cyborg_return"]
    gap = result["transfer_gap"]
    print(f"\n== learning benchmark: preset {result['preset']}, run {result['run_dir']}")
    print(f"trained        {result['env_steps']:,} env steps, {result['minutes']:.1f} min of training time")
    print(f"exported       {result['submission']} (checkpoint {result['checkpoint']})")
    print(f"simulator      {_line(result['sim_return'])}")
    scripted_sim = result["scripted_sim_return"]
    print(f"  scripted     {_line(scripted_sim)}{' ' + scripted_sim['policy'] if scripted_sim else ''}")
    print(f"  oracle       {_line(result['oracle_sim_return'])} (sees the true state: near the ceiling)")
    print(f"  vs scripted  {_paired_line(result['sim_minus_scripted'])}")
    print(f"  decisions    {command_mix_line(result['command_mix'])}")
    print(f"CybORG         {_line(result['cyborg_return'])}")
    print(f"transfer gap   {'-' if gap is None else f'{gap:+.1f}'} (simulator mean - CybORG mean)")
    print(f"scripted       {_line(scripted)}{' ' + scripted['policy'] + ' on CybORG' if scripted else ''}")
    print(f"  vs scripted  {_paired_line(result['cyborg_minus_scripted'])}")
    fall = result["largest_fall"]
    print(f"stability      {describe_fall(fall and Fall(**fall))} (windows of {WINDOW_ENV_STEPS:,} env steps)")
    print(f"curves         {result['curves_png']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args, overrides = parse_args(argv)
        result = run_benchmark(args, overrides)
    except UsageError as exc:
        print(f"bench/learning.py: error: {exc}", file=sys.stderr)
        return 2
    except (StepFailed, RuntimeError) as exc:  # RuntimeError: a CybORG evaluation process failed
        print(f"bench/learning.py: {exc}", file=sys.stderr)
        return 1
    except (Interrupted, KeyboardInterrupt):
        print("interrupted: run the same command again to resume (training continues from its checkpoint)")
        return 130
    print_summary(result)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
