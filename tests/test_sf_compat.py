"""One test per Sample Factory 2.1.1 fix in cage_sf/sf_compat.py; each fails without its fix.

The V-trace summary fix and the train_for_seconds fix are proven by real training runs in test_training.py.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from sample_factory.algo.learning.learner import Learner
from sample_factory.algo.runners import runner as runner_module

from cage_sf import sf_compat
from cage_sf.train import resolve_config

sf_compat.apply()


def test_wandb_init_works_offline_without_credentials(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials
    cfg = resolve_config("smoke", ["--backend=synthetic", "--with_wandb=True", f"--train_dir={tmp_path}"])
    import wandb

    runner_module.init_wandb(cfg)  # SF's own version raises: wandb.Settings(start_method=...) is rejected
    try:
        assert wandb.run is not None and wandb.run.settings.mode == "offline"
        assert wandb.run.dir.startswith(str(tmp_path / "smoke"))
    finally:
        wandb.finish()


def test_checkpoint_with_numpy_scalar_loads(tmp_path):
    path = tmp_path / "checkpoint_000000001_100.pth"
    torch.save({"train_step": 1, "env_steps": 100, "best_performance": np.float64(-42.0)}, path)
    loaded = Learner.load_checkpoint([str(path)], "cpu")  # SF's own returns None: weights_only rejects numpy
    assert loaded is not None and loaded["env_steps"] == 100 and loaded["best_performance"] == -42.0


def test_unreadable_checkpoint_fails_loudly(tmp_path):
    path = tmp_path / "checkpoint_000000001_100.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(sf_compat.CheckpointLoadError, match="could not load checkpoint"):
        Learner.load_checkpoint([str(path)], "cpu")


def test_fixes_reach_spawned_processes():
    """SF's children get the registered env and model functions by unpickling the global context."""
    from sample_factory.algo.utils.context import sf_global_context

    import cage_sf.env_registry  # noqa: F401
    import cage_sf.models  # noqa: F401

    child = (
        "import pickle, sys\n"
        "pickle.loads(sys.stdin.buffer.read())\n"
        "from sample_factory.algo.learning.learner import Learner\n"
        "from sample_factory.algo.runners.runner import Runner\n"
        "print(Learner.load_checkpoint.__module__, hasattr(Learner._record_summaries, '__wrapped__'),\n"
        "      hasattr(Runner._update_stats_and_print_report, '__wrapped__'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child],
        input=pickle.dumps(sf_global_context()),
        capture_output=True,
        timeout=120,
        check=True,
    ).stdout.decode()
    assert out.split() == ["cage_sf.sf_compat", "True", "True"]
