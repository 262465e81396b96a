"""A hyperparameter sweep on the learning benchmark, with Optuna: each trial is `bench/learning.py` at the sweep's
fixed budget (train on our simulator, export, score the exported policy on simulator episodes; CybORG off), and
its objective is that simulator mean return.

    python bench/sweep.py configs/sweeps/leaderboard.yaml --trials=8
    python bench/sweep.py configs/sweeps/leaderboard.yaml --trials=8 --storage=postgresql://me@db/sweeps  # on each box
    python bench/sweep.py leaderboard --trials=2 --enqueue=preset --enqueue=preset,exploration_loss_coeff=0.002

The sweep file (configs/sweeps/) names the base preset, the settings every trial shares (`fixed`), the budget
(`env_steps`, `episodes`, `select_episodes`) and the search `space` (log: log-uniform, uniform, choice).
A trial chooses its checkpoint on 30 simulator episodes unless the file says otherwise (export's default of 200
would add minutes to every trial; the trial's score is its own `episodes`).

- Shared storage: processes given the same --storage and --study add trials to one study, on one machine or on
  many (an RDB URL that all reach, e.g. PostgreSQL or MySQL); Optuna's TPE sampler proposes from every finished
  trial. The default storage is SQLite in the sweep's directory (one machine).
- Pruning: a trial reports its training window (`cc4/eval_return`, the last 3 points) at each tenth of the budget;
  Optuna's median pruner stops a trial below the median of earlier trials at the same mark (after 3 trials).
  A trial whose training diverged (it stops with a `training diverged` line) is pruned too, never scored.
- Interrupt and resume: Ctrl-C stops the running trial cleanly and queues it again; a trial whose process died
  is queued again when its heartbeat goes stale. Either way the same command retries it with the same
  parameters, and since a trial's run is named by its parameters (STUDY-<hash>), training resumes from the
  run's checkpoint.
- Output, after every trial: SWEEP_DIR/trials.md (every trial, best first) and SWEEP_DIR/best.yaml (a preset: the
  base preset with the fixed settings and the best trial's parameters; copy it to configs/ to use it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cage_sf.errors import UsageError  # noqa: E402

SPEC_KEYS = {"description", "preset", "fixed", "env_steps", "episodes", "select_episodes", "space"}
REPORTS = 10  # pruning marks per trial: every tenth of the budget
WINDOW = 3  # training-window points averaged at a mark
POLL_S = 20.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench/sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="a sweep file (configs/sweeps/NAME.yaml) or the NAME of one")
    parser.add_argument("--trials", type=int, default=1, help="trials this process runs (others may run alongside)")
    parser.add_argument("--study", help="study name (default: the sweep file's name)")
    parser.add_argument("--storage", help="Optuna storage URL shared by every process (default: SQLite in SWEEP_DIR)")
    parser.add_argument("--sweep_dir", help="runs and tables (default: ~/cage-sf-bench/sweeps/STUDY)")
    parser.add_argument("--env_steps", type=int, help="override the sweep file's budget per trial")
    parser.add_argument(
        "--enqueue", action="append", default=[], metavar="SETTINGS",
        help="run this trial before the sampler's (repeatable; skipped if the study has it): 'preset' (the base "
        "preset's own value of every swept setting, a reference point), NAME=VALUE,... (the others drawn) or "
        "preset,NAME=VALUE,... (the preset's values but these)",
    )  # fmt: skip
    return parser


def load_spec(name: str) -> dict:
    """The sweep file, checked: every problem is one line naming the key."""
    path = Path(name)
    if not path.is_file():
        path = REPO / "configs" / "sweeps" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (REPO / "configs" / "sweeps").glob("*.yaml"))
        raise UsageError(f"unknown sweep {name!r}; sweep files: {', '.join(known)} (or a YAML path)")
    spec = yaml.safe_load(path.read_text()) or {}
    if unknown := set(spec) - SPEC_KEYS:
        raise UsageError(
            f"{path.name}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(SPEC_KEYS))}"
        )
    if not isinstance(spec.get("space"), dict) or not spec["space"]:
        raise UsageError(f"{path.name}: `space` must map parameter names to distributions")
    for param, dist in spec["space"].items():
        kind, values = next(iter(dist.items())) if isinstance(dist, dict) and len(dist) == 1 else (None, None)
        if kind == "choice":
            valid = isinstance(values, list) and len(values) > 0
        else:
            valid = isinstance(values, list) and len(values) == 2 and values[0] < values[1]
            valid = valid and kind in ("log", "uniform") and (kind == "uniform" or values[0] > 0)
        if not valid:
            raise UsageError(
                f"{path.name}: {param} must be {{log: [lo, hi]}} (0 < lo < hi), {{uniform: [lo, hi]}} (lo < hi) "
                "or {choice: [values]}"
            )
    spec.setdefault("fixed", {})
    spec.setdefault("episodes", 100)
    spec.setdefault("select_episodes", 30)
    spec["name"] = path.stem
    return spec


def suggest(trial, space: dict) -> dict:
    """The trial's parameters, drawn from the space by Optuna's sampler."""
    params = {}
    for name, dist in space.items():
        kind, values = next(iter(dist.items()))
        if kind == "choice":
            params[name] = trial.suggest_categorical(name, values)
        else:
            params[name] = trial.suggest_float(name, values[0], values[1], log=kind == "log")
    return params


def enqueued_params(settings: str, spec: dict) -> dict:
    """The parameters of one --enqueue: NAME=VALUE pairs checked against the space, after 'preset' (when first)
    the base preset's own value of every swept setting."""
    space = spec["space"]
    pairs = settings.split(",")
    params = {}
    if pairs[0] == "preset":
        from cage_sf.train import resolve_config

        cfg = resolve_config(spec["preset"], overrides(spec["fixed"]))
        params = {name: getattr(cfg, name) for name in space}
        pairs = pairs[1:]
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in space:
            raise UsageError(f"--enqueue {settings}: expected 'preset' or NAME=VALUE,... of {', '.join(space)}")
        value = _parse_value(text)
        kind, values = next(iter(space[name].items()))
        if kind == "choice":
            inside = value in values
        else:
            inside = isinstance(value, float | int) and values[0] <= value <= values[1]
        if not inside:
            raise UsageError(f"--enqueue {settings}: {name}={value} is outside the sweep's {kind} {values}")
        params[name] = value
    return params


def _parse_value(text: str):
    """A number as Python reads it (YAML would keep 3e-4 a string), else YAML (true, false, names)."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def run_name(study: str, params: dict) -> str:
    """Named by the parameters, so a retried trial resumes the same run."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return f"{study}-{digest}"


def overrides(settings: dict) -> list[str]:
    return [f"--{name}={value}" for name, value in settings.items()]


def run_trial(trial, spec: dict, sweep_dir: Path, env_steps: int) -> float:
    """`bench/learning.py` for one trial, its training windows reported as it goes; the simulator mean return."""
    import optuna

    params = suggest(trial, spec["space"])
    experiment = run_name(trial.study.study_name, params)
    trial.set_user_attr("run", experiment)
    command = [
        sys.executable, str(REPO / "bench" / "learning.py"), f"--preset={spec['preset']}", f"--env_steps={env_steps}",
        f"--train_dir={sweep_dir / 'runs'}", f"--experiment={experiment}", f"--episodes={spec['episodes']}",
        f"--select_episodes={spec['select_episodes']}", "--cyborg_episodes=0", *overrides(spec["fixed"] | params),
    ]  # fmt: skip
    print(f"== trial {trial.number}: {' '.join(command[1:])}", flush=True)
    log = (sweep_dir / "logs" / f"{experiment}.log").open("a")
    logged_before = log.tell()  # a retried trial appends to its log
    bench = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    marks = [env_steps * (k + 1) // REPORTS for k in range(REPORTS - 1)]
    try:
        while bench.poll() is None:
            time.sleep(POLL_S)
            marks = _report(trial, sweep_dir / "runs" / experiment, marks)
            if trial.should_prune():
                _stop(bench)
                raise optuna.TrialPruned()
    except KeyboardInterrupt:
        _stop(bench)
        raise
    finally:
        log.close()
    if bench.returncode != 0:
        if diverged := _divergence(Path(log.name), logged_before):
            trial.set_user_attr("diverged", diverged)
            raise optuna.TrialPruned(diverged)
        raise RuntimeError(f"trial {trial.number}: bench/learning.py exited {bench.returncode}; see {log.name}")
    result = json.loads((sweep_dir / "runs" / experiment / "bench" / "result.json").read_text())
    for key in ("env_steps", "minutes"):
        trial.set_user_attr(key, result[key])
    trial.set_user_attr("sem", result["sim_return"]["sem"])
    return result["sim_return"]["mean"]


def _divergence(log: Path, start: int) -> str | None:
    """The verdict of a training that stopped because it diverged, from the trial's log after `start`. Such a
    trial is pruned, not failed: TPE counts a pruned trial as worse than every finished one, and ignores a failed
    one (so it would propose the same diverging region again)."""
    from cage_sf.divergence import DIVERGED

    verdict = f"cage-sf: run failed: {DIVERGED}"
    with log.open("rb") as stream:
        stream.seek(start)
        lines = [line for line in stream.read().decode(errors="replace").splitlines() if line.startswith(verdict)]
    return lines[-1].removeprefix("cage-sf: run failed: ") if lines else None


def _report(trial, run: Path, marks: list[int]) -> list[int]:
    """Report the training window (the mean of the last points of `cc4/eval_return`) at every mark the run has
    passed; the marks still ahead."""
    from cage_sf.plots import read_series

    if not (run / ".summary").is_dir():
        return marks
    series = read_series(run, "cc4/eval_return")
    reached = int(series.steps.max()) // 5 if len(series.steps) else 0
    while marks and marks[0] <= reached:
        values = series.values[series.steps <= 5 * marks[0]]
        if len(values):
            trial.report(float(values[-WINDOW:].mean()), marks[0])
        marks = marks[1:]
    return marks


def _stop(bench: subprocess.Popen) -> None:
    """Stop the benchmark as `kill` does (it stops training cleanly), then wait for it."""
    if bench.poll() is None:
        os.killpg(bench.pid, signal.SIGTERM)
    bench.wait()


def write_tables(study, spec: dict, sweep_dir: Path) -> None:
    import optuna

    names = list(spec["space"])
    rows = sorted(study.trials, key=lambda t: (t.value is None, -(t.value or 0.0)))
    lines = [
        f"Sweep `{spec['name']}`, study `{study.study_name}`: preset {spec['preset']} with {spec['fixed']}, "
        f"{spec['env_steps']:,} env steps per trial; objective: simulator mean return of the exported policy "
        f"({spec['episodes']} episodes).",
        "",
        "| trial | state | return ± SEM | " + " | ".join(names) + " | env steps | minutes |",
        "|" + "---|" * (len(names) + 5),
    ]
    for t in rows:
        state = "pruned (diverged)" if "diverged" in t.user_attrs else t.state.name.lower()
        if t.state == optuna.trial.TrialState.FAIL and (retry := _retried_as(t, study.trials)) is not None:
            state = f"retried as {retry}"  # interrupted or died: its parameters ran again (resuming its run)
        value = f"{t.value:.1f} ± {t.user_attrs.get('sem', 0):.1f}" if t.value is not None else "-"
        if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values:
            step = max(t.intermediate_values)
            value = f"({t.intermediate_values[step]:.0f} at {step:,})"
        params = [_fmt(_params(t).get(n)) for n in names]
        steps, minutes = t.user_attrs.get("env_steps", "-"), t.user_attrs.get("minutes", "-")
        lines.append(f"| {t.number} | {state} | {value} | " + " | ".join(params) + f" | {steps} | {minutes} |")
    (sweep_dir / "trials.md").write_text("\n".join(lines) + "\n")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = max(complete, key=lambda t: t.value)
        preset = {
            "description": f"Best of sweep {spec['name']} (trial {best.number}: {best.value:.1f} on the simulator)",
            "extends": spec["preset"],
            **spec["fixed"],
            **best.params,
        }
        (sweep_dir / "best.yaml").write_text(yaml.safe_dump(preset, sort_keys=False))


def _params(trial) -> dict:
    """A trial's parameters; a queued trial has none yet, only the ones it was queued with."""
    return trial.params or trial.system_attrs.get("fixed_params", {})


def _retried_as(trial, trials) -> int | None:
    """The number of the next trial (run or queued) with the same parameters, if any."""
    return next((t.number for t in trials if t.number > trial.number and _params(t) == trial.params), None)


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since v2

    try:
        args = _parser().parse_args(argv)
        spec = load_spec(args.spec)
        if args.env_steps is not None:
            spec["env_steps"] = args.env_steps
        if args.trials < 1 or spec.get("env_steps", 0) < 1:
            raise UsageError("--trials and env_steps must be at least 1")
        queued = [enqueued_params(settings, spec) for settings in args.enqueue]
    except UsageError as exc:
        print(f"bench/sweep.py: error: {exc}", file=sys.stderr)
        return 2
    study_name = args.study or spec["name"]
    sweep_dir = Path(args.sweep_dir or Path.home() / "cage-sf-bench" / "sweeps" / study_name).expanduser().resolve()
    (sweep_dir / "logs").mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(
        args.storage or f"sqlite:///{sweep_dir / 'optuna.db'}",
        heartbeat_interval=60,
        grace_period=180,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
    )
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=spec["env_steps"] // 5),
    )

    for params in queued:
        study.enqueue_trial(params, skip_if_exists=True)

    def objective(trial) -> float:
        try:
            return run_trial(trial, spec, sweep_dir, spec["env_steps"])
        except KeyboardInterrupt:
            study.enqueue_trial(trial.params)  # the next run of the sweep retries it, resuming its run
            raise
        finally:
            write_tables(study, spec, sweep_dir)

    try:
        study.optimize(objective, n_trials=args.trials, catch=(RuntimeError,))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to go on (an unfinished trial is retried and resumes)")
        return 130
    write_tables(study, spec, sweep_dir)
    print(f"== sweep {study_name}: {len(study.trials)} trials; {sweep_dir / 'trials.md'}, {sweep_dir / 'best.yaml'}")
    print((sweep_dir / "trials.md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
