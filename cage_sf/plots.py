"""PNG plots people look at instead of logs: an evaluation's returns and a run's learning curves, and how steadily
a run's return climbed (`return_windows`, `largest_fall`: printed by `cage-sf plot`).

A run resumed after an interrupt writes a new TensorBoard event file per session; `read_series` joins them on
one training clock (each session counts from its file's creation, so the time between sessions is left out).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cage_sf import cc4  # noqa: E402
from cage_sf.errors import UsageError  # noqa: E402

REFERENCE_COLORS = ("tab:green", "tab:red", "tab:purple", "tab:orange", "tab:brown", "tab:gray")
PHASES = ("phase 1 (pre-planning)", "phase 2A (mission A)", "phase 2B (mission B)")


def plot_evaluation(returns: list[float], phase_sums: list[list[float]], title: str, path: Path) -> None:
    fig, (hist, phases) = plt.subplots(1, 2, figsize=(11, 4))
    hist.hist(returns, bins=min(30, max(5, len(returns) // 3)), color="tab:blue", alpha=0.8)
    hist.axvline(np.mean(returns), color="black", linestyle="--", label=f"mean {np.mean(returns):.0f}")
    hist.set(xlabel="episode return (evaluation.py counting)", ylabel="episodes", title="Return distribution")
    hist.legend()
    sums = np.asarray(phase_sums)
    phases.bar(PHASES, sums.mean(axis=0), yerr=sums.std(axis=0), color="tab:orange", capsize=4)
    phases.set(ylabel="reward per episode", title="Reward per mission phase")
    phases.tick_params(axis="x", labelsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = run_dir / ".summary" / "0"
    if not summary.is_dir():
        raise UsageError(f"no TensorBoard logs in {summary}")
    events = EventAccumulator(str(summary), size_guidance={"scalars": 0})
    events.Reload()
    scalars = {}
    for tag in events.Tags()["scalars"]:
        points = events.Scalars(tag)
        scalars[tag] = (np.array([p.step for p in points]), np.array([p.value for p in points]))
    return scalars


class Series(NamedTuple):
    """One scalar of a run: SF's step (agent steps), value and training seconds at each point."""

    steps: np.ndarray
    values: np.ndarray
    seconds: np.ndarray


def _sessions(run_dir: Path, tag: str) -> list[tuple[float, float, list[tuple[int, float, float]]]]:
    """(start, last summary's wall time, [(step, value, wall time) of `tag`]) of each event file, one per training
    session, in time order. A session starts when its file was created (the runner's start, before its workers)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary = run_dir / ".summary" / "0"
    files = sorted(summary.glob("events.out.tfevents.*")) if summary.is_dir() else []
    if not files:
        raise UsageError(f"no TensorBoard logs in {summary}")
    sessions = []
    for file in files:
        events = EventAccumulator(str(file), size_guidance={"scalars": 0})
        events.Reload()
        tags = events.Tags()["scalars"]
        every = [e.wall_time for t in tags for e in events.Scalars(t)]
        if every:
            points = [(e.step, e.value, e.wall_time) for e in events.Scalars(tag)] if tag in tags else []
            sessions.append((min(events.FirstEventTimestamp(), *every), max(every), points))
    return sorted(sessions, key=lambda session: session[0])


def read_series(run_dir: Path, tag: str) -> Series:
    """`tag` over every session of a run, on one training clock: each event file (one per session) counts from
    its creation, after the whole length of the sessions before it. Points of an earlier session at or
    past the step a later session resumed from were never checkpointed and are dropped, as TensorBoard does."""
    kept: list[tuple[int, float, float]] = []
    offset = 0.0
    for start, end, points in _sessions(run_dir, tag):
        if points:
            kept = [p for p in kept if p[0] < points[0][0]]
        kept += [(step, value, offset + wall - start) for step, value, wall in points]
        offset += end - start
    steps, values, seconds = zip(*kept, strict=True) if kept else ((), (), ())
    return Series(np.array(steps, dtype=np.int64), np.array(values, dtype=float), np.array(seconds, dtype=float))


class Fall(NamedTuple):
    """A window's return below the best window before it, as a share of that best's size."""

    share: float
    best: tuple[int, float]  # (window's first env step, return)
    fallen: tuple[int, float]


def split_windows(run_dir: Path, env_steps: int = 250_000) -> tuple[list[tuple[int, float]], tuple[int, float] | None]:
    """(first env step, mean return) of each window of `env_steps` env steps that holds summaries of the training
    episodes' evaluation-style return (each summary: the mean of SF's last `stats_avg` episodes), in order; and
    apart, the window the run ended in when it ended before half of it (None: it did not). That thin tail holds
    the final minutes' one or two summaries, means of `stats_avg` episodes with about twice a window's noise,
    so it is shown but not judged."""
    series = read_series(run_dir, "cc4/eval_return")
    env = series.steps // len(cc4.AGENTS)
    window = env // env_steps
    windows = [(int(k) * env_steps, float(series.values[window == k].mean())) for k in np.unique(window)]
    if windows and env.max() - windows[-1][0] < env_steps / 2:
        return windows[:-1], windows[-1]
    return windows, None


def return_windows(run_dir: Path, env_steps: int = 250_000) -> list[tuple[int, float]]:
    """The windows of `split_windows` whose falls count: all but a thin tail."""
    return split_windows(run_dir, env_steps)[0]


def largest_fall(windows: list[tuple[int, float]]) -> Fall | None:
    """The deepest fall of a window below the best window before it (None: the return never fell). A return
    falling from -200 to -220 is a share of 0.1."""
    falls = []
    best = windows[0] if windows else None
    for window in windows[1:]:
        if window[1] < best[1]:
            falls.append(Fall((best[1] - window[1]) / abs(best[1]), best, window))
        else:
            best = window
    return max(falls, default=None)


def print_windows(run_dir: Path, env_steps: int) -> None:
    windows, tail = split_windows(run_dir, env_steps)
    print(f"training return per {env_steps:,} env steps: {' '.join(f'{value:.0f}' for _, value in windows)}")
    if tail is not None:
        print(f"the run ended early in the next window (from {tail[0]:,} env steps): {tail[1]:.0f}, not judged")
    print(describe_fall(largest_fall(windows)))


def describe_fall(fall: Fall | None) -> str:
    if fall is None:
        return "it never fell below an earlier window"
    (best_step, best), (step, value) = fall.best, fall.fallen
    return (
        f"largest fall below an earlier best window: {fall.share:.1%} ({best:.0f} from {best_step:,} env steps, "
        f"{value:.0f} from {step:,})"
    )


def training_seconds(run_dir: Path) -> float:
    """The run's training time so far: its sessions' summed length, each up to its last summary (0 before any)."""
    try:
        return sum(end - start for start, end, _ in _sessions(run_dir, ""))
    except UsageError:
        return 0.0


def plot_learning_curves(
    run_dir: Path, path: Path, *, wall_clock: bool = False, references: dict[str, float] | None = None
) -> Path:
    """Evaluation-style return, reward per phase and throughput against agent steps. With `wall_clock`, the
    learning benchmark's figure instead: the evaluation-style return against env steps and against training
    time, with `references` (label -> return, e.g. a scripted defender's) as horizontal lines in both."""
    if wall_clock:
        return _plot_return_against_steps_and_time(run_dir, path, references or {})
    scalars = read_scalars(run_dir)
    fig, (ret, phases, fps) = plt.subplots(1, 3, figsize=(15, 4))
    for axis, tags, title in (
        (ret, ["cc4/eval_return"], "Evaluation-style return"),
        (phases, [f"cc4/reward_phase_{p}" for p in range(3)], "Reward per mission phase"),
        (fps, ["perf/_fps"], "Throughput (agent steps/s)"),
    ):
        for tag, label in zip(tags, PHASES if len(tags) == 3 else tags, strict=True):
            if tag in scalars:
                axis.plot(*scalars[tag], label=label)
        axis.set(xlabel="agent steps", title=title)
        logged = any(tag in scalars for tag in tags)
        if len(tags) == 3 and logged:  # an empty legend is a matplotlib warning on stderr
            axis.legend(fontsize=8)
        if not logged:
            axis.text(0.5, 0.5, "not logged yet", ha="center", transform=axis.transAxes)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_return_against_steps_and_time(run_dir: Path, path: Path, references: dict[str, float]) -> Path:
    series = read_series(run_dir, "cc4/eval_return")
    fig, (by_steps, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for axis, x, label in (
        (by_steps, series.steps / len(cc4.AGENTS), "env steps (agent steps / 5)"),
        (by_time, series.seconds / 60, "training time (minutes)"),
    ):
        if len(series.steps):
            axis.plot(x, series.values, color="tab:blue", label="training episodes (cc4/eval_return)")
        else:
            axis.text(0.5, 0.5, "not logged yet", ha="center", transform=axis.transAxes)
        for (name, value), color in zip(references.items(), REFERENCE_COLORS, strict=False):
            axis.axhline(value, color=color, linestyle="--", linewidth=1, label=f"{name}: {value:.0f}")
        axis.set(xlabel=label, title=f"Evaluation-style return against {label.split(' (')[0]}")
        axis.grid(alpha=0.3)
    by_steps.set_ylabel("episode return (evaluation.py counting)")
    if len(series.steps) or references:
        by_time.legend(fontsize=8, loc="lower right")
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
