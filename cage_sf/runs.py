"""Where a run lives: experiment name -> run directory -> checkpoint (paths only, so it imports quickly)."""

from __future__ import annotations

from pathlib import Path

from cage_sf.agent.cc4_memory import check_version
from cage_sf.errors import UsageError


def run_dir(experiment: str, train_dir: str) -> Path:
    path = Path(experiment) if Path(experiment, "config.json").is_file() else Path(train_dir, experiment)
    if not (path / "config.json").is_file():
        raise UsageError(f"unknown experiment {experiment!r}: no {path / 'config.json'}")
    return path


def check_run_memory(run: Path, config: dict, doing: str) -> None:
    """A run (`config`: its config.json) whose networks read another agent-memory layout than this code builds can
    be neither resumed nor exported (the features would be read by position with other meanings): one line."""
    try:
        check_version(config.get("memory_version"))
    except ValueError as exc:
        raise UsageError(f"cannot {doing} run {run}: {exc}") from None


def find_checkpoint(run: Path, which: str) -> Path:
    if which not in ("best", "latest"):
        if not Path(which).is_file():
            raise UsageError(f"checkpoint {which} does not exist")
        return Path(which)
    pattern = "best_*.pth" if which == "best" else "checkpoint_*.pth"
    found = sorted((run / "checkpoint_p0").glob(pattern))
    if not found:
        raise UsageError(f"no {which} checkpoint in {run / 'checkpoint_p0'}")
    return found[-1]
