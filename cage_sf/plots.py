"""PNG plots people look at instead of logs: an evaluation's returns and a run's learning curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cage_sf.errors import UsageError  # noqa: E402

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


def plot_learning_curves(run_dir: Path, path: Path) -> Path:
    """Evaluation-style return, reward per phase and throughput against env steps."""
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
        if len(tags) == 3:
            axis.legend(fontsize=8)
        if not any(tag in scalars for tag in tags):
            axis.text(0.5, 0.5, "not logged yet", ha="center", transform=axis.transAxes)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
