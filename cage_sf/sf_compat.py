"""Every fix Sample Factory 2.1.1 needs with current torch and wandb, in one place.

`apply()` is idempotent. `cage_sf.env_registry` and `cage_sf.models` call it at import time: Sample
Factory's spawned processes unpickle our registered functions, import those modules, and so get the
fixes too. Each fix names what breaks without it; tests/test_sf_compat.py has one test per fix.
"""

from __future__ import annotations

import functools
import logging
import netrc
import os
import time

import torch
from sample_factory.algo.learning.learner import Learner
from sample_factory.algo.runners import runner as runner_module
from sample_factory.algo.runners.runner import Runner
from sample_factory.utils import wandb_utils
from sample_factory.utils.utils import log as sf_log

log = logging.getLogger(__name__)

_applied = False


class CheckpointLoadError(RuntimeError):
    """Checkpoints exist but none could be read: refuse to silently start from scratch."""


def apply() -> None:
    global _applied
    if _applied:
        return
    wandb_utils.init_wandb = runner_module.init_wandb = init_wandb
    Learner.load_checkpoint = staticmethod(load_checkpoint)
    Learner._record_summaries = _record_summaries_with_vtrace(Learner._record_summaries)
    Runner._update_stats_and_print_report = _stop_after_train_for_seconds(Runner._update_stats_and_print_report)
    _log_through_sf()
    _applied = True


def _log_through_sf() -> None:
    """SF logs through its own non-propagating `rl` logger; give ours the same handlers so our messages show."""
    ours = logging.getLogger("cage_sf")
    ours.setLevel(logging.INFO)
    for handler in sf_log.handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)


def wandb_credentials_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def init_wandb(cfg) -> None:
    """SF's `init_wandb`, which passes `wandb.Settings(start_method=...)` that current wandb rejects.

    Training never waits on the network: offline without credentials (or when WANDB_MODE says so), and
    offline if going online fails. The offline run directory is printed for a later `wandb sync`.
    """
    if not cfg.with_wandb:
        return
    import wandb

    if "wandb_unique_id" not in cfg:
        cfg.wandb_unique_id = f"{cfg.experiment}_{time.strftime('%Y%m%d_%H%M%S')}"
    mode = os.environ.get("WANDB_MODE") or ("online" if wandb_credentials_present() else "offline")
    run_dir = os.path.join(cfg.train_dir, cfg.experiment)
    os.makedirs(run_dir, exist_ok=True)
    kwargs = dict(
        project=cfg.wandb_project,
        entity=cfg.wandb_user,
        sync_tensorboard=True,
        id=cfg.wandb_unique_id,
        name=cfg.wandb_unique_id,
        group=cfg.wandb_group or cfg.env,
        job_type=cfg.wandb_job_type,
        tags=cfg.wandb_tags,
        resume="allow",
        dir=run_dir,
    )
    try:
        wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60), **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure to go online must not stop training
        if mode == "offline":
            raise
        log.warning("W&B online init failed (%s); logging offline instead", exc)
        mode = "offline"
        wandb.init(mode=mode, **kwargs)
    wandb.config.update(cfg, allow_val_change=True)
    if mode == "offline":
        log.warning("W&B is offline; upload later with: wandb sync %s", os.path.dirname(wandb.run.dir))


def load_checkpoint(checkpoints: list[str], device) -> dict | None:
    """SF's loader under torch>=2.6 defaults to `weights_only=True`, which rejects the numpy scalar SF stores
    as `best_performance`; SF then logs the error and resumes from scratch. Our checkpoints are our own
    files, so load them fully, and fail loudly rather than discard a run's progress."""
    if not checkpoints:
        log.warning("No checkpoints found")
        return None
    latest = checkpoints[-1]
    log.warning("Loading state from checkpoint %s...", latest)
    try:
        return torch.load(latest, map_location=device, weights_only=False)
    except Exception as exc:
        raise CheckpointLoadError(f"could not load checkpoint {latest}: {exc}") from exc


def _record_summaries_with_vtrace(record_summaries):
    """With V-trace the minibatch has no `advantages` (they are computed per minibatch as `adv`); SF's summary
    code reads `mb.advantages`, the learner dies at its first summary and the run hangs at 0 FPS."""

    @functools.wraps(record_summaries)
    def wrapper(self, train_loop_vars):
        mb = train_loop_vars.mb
        if "advantages" not in mb.keys():
            mb["advantages"] = train_loop_vars.adv
        return record_summaries(self, train_loop_vars)

    return wrapper


def _stop_after_train_for_seconds(update_stats):
    """SF never advances `Runner.total_train_seconds`, so `--train_for_seconds` never stops a run (and
    the `> 300 s` shortcut for writing averaged episode stats never applies)."""

    @functools.wraps(update_stats)
    def wrapper(self):
        self.total_train_seconds = time.time() - self.start_time
        update_stats(self)
        if not self.stopped and self._should_end_training():
            log.info("Stopping: reached train_for_seconds=%s", self.cfg.train_for_seconds)
            self._stop_training()

    return wrapper
