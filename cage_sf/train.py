"""`cage-sf train`: preset -> Sample Factory config -> asynchronous APPO with V-trace on CC4."""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
from pathlib import Path

import torch
from sample_factory.algo.runners.runner import AlgoObserver
from sample_factory.algo.utils.misc import ExperimentStatus
from sample_factory.train import make_runner

from cage_sf.agent.cc4_memory import MEMORY_VERSION
from cage_sf.backends import resolve_backend
from cage_sf.console import sf_log_muted
from cage_sf.errors import UsageError
from cage_sf.imitation import warm_start
from cage_sf.presets import build_parser, check_config, parse_config, parse_overrides, preset_argv
from cage_sf.run_guard import RunGuard
from cage_sf.runs import check_run_memory

BACKEND_WHY = {
    "sim": "our CC4 simulator, the default: ~200x faster than CybORG; --backend=cyborg trains on real CybORG",
    "cyborg": "real CybORG, asked for with --backend=cyborg: about 30 env steps/s per core",
}


def derived_argv(cfg: argparse.Namespace, explicit: set[str]) -> list[str]:
    """Settings resolved from others, passed as explicit arguments so a resumed run sees the same values.
    `explicit`: the options given on the command line, which are never replaced."""
    backend = resolve_backend(cfg.backend)
    argv = [f"--backend={backend}"]
    if backend == "cyborg" and "vector_size" not in explicit:
        # a CybORG env is ~200x slower and far heavier than ours: the simulator's vector size would build
        # hundreds of CybORG instances on a many-core box
        argv.append(f"--vector_size={cfg.cyborg_vector_size}")
    if backend != "sim" and cfg.privileged_critic and "privileged_critic" not in explicit:
        # only our simulator has a true state to show: a preset's privileged critic sees the blue view elsewhere
        argv.append("--privileged_critic=False")
    if cfg.device == "auto":
        argv.append(f"--device={'gpu' if torch.cuda.is_available() else 'cpu'}")
    if cfg.with_vtrace and not cfg.use_rnn:
        # SF's learner asserts recurrence == rollout for V-trace; a feed-forward model ignores recurrence otherwise
        argv.append(f"--recurrence={cfg.rollout}")
    return argv


def check_run_dir(cfg: argparse.Namespace) -> None:
    run_dir = os.path.join(cfg.train_dir, cfg.experiment)
    try:
        os.makedirs(run_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write the run directory {run_dir}: {exc.strerror or exc}") from None


def resolve_config(preset: str, overrides: list[str]) -> argparse.Namespace:
    parser = build_parser()
    argv = preset_argv(preset, overrides, parser)
    argv += derived_argv(parse_config(parser, argv), set(parse_overrides(overrides)))
    cfg = parse_config(parser, argv)
    check_config(cfg)
    cfg.memory_version = MEMORY_VERSION  # kept in the run's config.json: what its networks read (runs.check_run_memory)
    return cfg


def keep_saved_settings(cfg: argparse.Namespace, overrides: list[str]) -> None:
    """A resumed run goes on with the settings it started with (its config.json), whatever its preset says now:
    Sample Factory lays `cfg.cli_args` over the saved config, so only what this command line typed (and the
    device this machine resolves `auto` to) stays in it; the preset's other values would silently replace the
    run's."""
    typed, naming = set(parse_overrides(overrides)), {"train_dir", "experiment"}
    cfg.cli_args = {k: v for k, v in cfg.cli_args.items() if k in typed | naming | {"device"}}
    changed = ", ".join(f"--{k}={v}" for k, v in cfg.cli_args.items() if k in typed - naming) or "nothing"
    print(f"resuming {Path(cfg.train_dir, cfg.experiment)} with its saved settings; changed here: {changed}")


def _interrupt_on_sigterm() -> None:
    """`kill` stops a run like Ctrl-C does: components stop and the latest state is saved."""
    signal.signal(signal.SIGTERM, lambda signum, frame: signal.default_int_handler(signum, frame))


class _FinalSummaries(AlgoObserver):
    """SF writes summaries on a timer only: write them once more at the end so a run logs its last episodes."""

    def on_stop(self, runner) -> None:
        runner._report_experiment_summaries()


def train(preset: str, overrides: list[str]) -> int:
    """Run to the end (0) or an interrupt (its status); a run that fails raises `RunFailure` with one line."""
    with sf_log_muted():  # nothing of SF's before a usage error
        cfg = resolve_config(preset, overrides)
        check_run_dir(cfg)
        saved = Path(cfg.train_dir, cfg.experiment, "config.json")
        if saved.is_file():
            check_run_memory(saved.parent, json.loads(saved.read_text()), "resume")
            keep_saved_settings(cfg, overrides)
        import cage_sf.env_registry  # noqa: F401  (registers env `cc4`)
        import cage_sf.models  # noqa: F401  (registers the CC4 actor-critic)

    print(f"backend: {cfg.backend} ({BACKEND_WHY.get(cfg.backend, 'asked for with --backend')})", flush=True)
    _interrupt_on_sigterm()
    try:
        warm_start(cfg)  # --imitate: a fresh run's first checkpoint
    except KeyboardInterrupt:
        print("interrupted while imitating: nothing was saved; the same command starts it again", flush=True)
        return int(ExperimentStatus.INTERRUPTED)
    cfg, runner = make_runner(cfg)
    runner.register_observer(_FinalSummaries())
    guard = RunGuard(runner, cfg.stall_timeout_s)
    status = guard.init_runner()
    if status == ExperimentStatus.SUCCESS:
        status = runner.run()
    _plot(cfg)
    guard.check_outcome(status)
    return int(status)


def _plot(cfg) -> None:
    from cage_sf.plots import plot_learning_curves

    run_dir = Path(cfg.train_dir, cfg.experiment)
    try:
        print(f"learning curves: {plot_learning_curves(run_dir, run_dir / 'learning_curves.png')}")
    except UsageError as exc:  # e.g. interrupted before the first summary
        print(f"no learning curves: {exc}")
