"""Every fix Sample Factory 2.1.1 needs with current torch and wandb, in one place (and the one learner setting it
has no option for: Adam's foreach step on CPU).

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
import warnings

import numpy as np
import torch
from sample_factory.algo.learning.learner import Learner
from sample_factory.algo.runners import runner as runner_module
from sample_factory.algo.runners.runner import Runner
from sample_factory.algo.sampling.batched_sampling import BatchedVectorEnvRunner
from sample_factory.algo.utils.misc import EPISODIC
from sample_factory.utils import wandb_utils
from sample_factory.utils.utils import log as sf_log

from cage_sf import divergence, run_guard, schedules
from cage_sf.losses import cc4_losses, hold_new_best

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
    Learner.init = _adam_foreach(Learner.init)
    Learner._record_summaries = _record_summaries_with_vtrace(Learner._record_summaries)
    Learner._prepare_batch = _keep_vtrace_bootstrap(Learner._prepare_batch)
    Learner._calculate_losses = _vtrace_from_bootstrap(Learner._calculate_losses)
    Learner.save_best = _anchor_to_new_best(Learner.save_best)
    Runner._update_stats_and_print_report = _stop_after_train_for_seconds(Runner._update_stats_and_print_report)
    BatchedVectorEnvRunner._process_env_step = _report_episode_infos(BatchedVectorEnvRunner._process_env_step)
    # torch 2.13 warns on every `float()` of a tensor that requires grad, and SF's learner takes one of its loss
    # each update (learner.py:739): without this, every run's stderr starts with that warning
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True to a scalar")
    _log_through_sf()
    run_guard.install()
    divergence.install()
    schedules.install()
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


def _adam_foreach(init):
    """SF builds Adam without `foreach`, and for CPU tensors torch then steps one parameter at a time: 6.7 ms a
    step against 2.5 ms for the leaderboard model (1.5M parameters in 52 tensors), ~4% of the learner's time. Set
    after SF's init, which loads the checkpoint's optimizer state (and with it the saved setting)."""

    @functools.wraps(init)
    def wrapper(self):
        result = init(self)
        for group in self.optimizer.param_groups:
            group["foreach"] = True
        return result

    return wrapper


def _record_summaries_with_vtrace(record_summaries):
    """With V-trace the minibatch has no `advantages` (they are computed per minibatch as `adv`); SF's summary
    code reads `mb.advantages`, the learner dies at its first summary and the run hangs at 0 FPS. Its
    `value_delta` compares with the inference worker's values, which under V-trace are not computed: dropped.
    The entropy is the decisions' (`cage_sf.losses`), beside their share and what the losses add."""

    @functools.wraps(record_summaries)
    def wrapper(self, train_loop_vars):
        mb = train_loop_vars.mb
        if "advantages" not in mb.keys():
            mb["advantages"] = train_loop_vars.adv
        stats = record_summaries(self, train_loop_vars)
        if stats is not None and self.cfg.with_vtrace:  # |V - V at inference|: no values at inference (models.py)
            stats.pop("value_delta", None)
            stats.pop("value_delta_max", None)
            stats["entropy"] = float(train_loop_vars.decision_entropy)  # SF's mean counts busy agents' 0
            logged = (
                *("decision_fraction", "command_entropy", "value_explained_variance", "entropy_coeff"),
                *("anchor_kl", "anchor_weight", "best_anchor_kl", "best_anchor_weight"),
            )
            for key in logged:
                if key in train_loop_vars:
                    stats[key] = float(train_loop_vars[key])
        return stats

    return wrapper


def vtrace(
    values: torch.Tensor,
    rewards: torch.Tensor,
    dones: torch.Tensor,
    ratios: torch.Tensor,
    bootstrap: torch.Tensor,
    gamma: float,
    rho_hat: float,
    c_hat: float,
    recurrence: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IMPALA's V-trace targets (Espeholt et al. 2018, eq. 1) and SF's policy-gradient advantages.

    All inputs are flat [num_trajectories * recurrence], trajectory-major, as SF's learner lays them out.
    `ratios` are pi/mu, `dones[t]` cuts the bootstrap after step t, and `bootstrap[t]` is V(x_{t+1}); only
    each trajectory's last entry, V(x_T), is read (inside a trajectory V(x_{t+1}) is `values[t+1]`). Backwards:
    v_s = V(x_s) + delta_s + g_s c_s (v_{s+1} - V(x_{s+1})), delta_s = rho_s (r_s + g_s V(x_{s+1}) - V(x_s)),
    advantage_s = rho_s (r_s + g_s v_{s+1} - V(x_s)), with g_s = gamma (1 - done_s), rho_s = min(rho_hat, ratio_s),
    c_s = min(c_hat, ratio_s) and v_T = V(x_T).
    """
    values, rewards, dones, ratios, bootstrap = (
        x.reshape(-1, recurrence) for x in (values, rewards, dones, ratios, bootstrap)
    )
    rhos = ratios.clamp(max=rho_hat)
    cs = ratios.clamp(max=c_hat)
    discounts = gamma * (1.0 - dones)
    vs = torch.empty_like(values)
    advantages = torch.empty_like(values)
    next_values = next_vs = bootstrap[:, -1]
    for t in reversed(range(recurrence)):
        delta = rhos[:, t] * (rewards[:, t] + discounts[:, t] * next_values - values[:, t])
        advantages[:, t] = rhos[:, t] * (rewards[:, t] + discounts[:, t] * next_vs - values[:, t])
        next_vs = vs[:, t] = values[:, t] + delta + discounts[:, t] * cs[:, t] * (next_vs - next_values)
        next_values = values[:, t]
    return vs.reshape(-1), advantages.reshape(-1)


def _keep_vtrace_bootstrap(prepare_batch):
    """SF computes V(x_T) with the learner's network for every trajectory (column T of `batch["values"]`) and
    then drops it, so its V-trace has no bootstrap (see `_vtrace_from_bootstrap`). Keep it as the per-sample
    `vtrace_bootstrap` = V(x_{t+1}), so it survives SF's minibatching (whole trajectories, indexed per sample)."""

    @functools.wraps(prepare_batch)
    def wrapper(self, batch):
        buff, dataset_size, num_invalids = prepare_batch(self, batch)
        if self.cfg.with_vtrace:
            next_values = batch["values"][:, 1:].reshape(dataset_size)
            buff["vtrace_bootstrap"] = next_values.to("cpu", dtype=torch.float, copy=True)
        return buff, dataset_size, num_invalids

    return wrapper


def _vtrace_from_bootstrap(calculate_losses):
    """SF 2.1.1's V-trace starts every trajectory's backward recursion from (V(x_{T-1}) - r_{T-1}) / gamma instead
    of V(x_T): unless an episode ends there, the last step of every rollout gets advantage 0 and value target
    V(x_{T-1}), and its reward (one in every `rollout`) reaches no target or advantage at all.

    Runs SF's `_calculate_losses` (model forward, ratios, summaries, timing), then computes every loss from the
    V-trace with `vtrace` started at the learner's V(x_T), as `cage_sf.losses` defines them (policy-side terms on
    decisions only, the teacher anchor). The discarded first pass costs one V-trace loop per minibatch (~1 ms)."""

    @functools.wraps(calculate_losses)
    def wrapper(self, mb, num_invalids: int):
        result = calculate_losses(self, mb, num_invalids)
        if not self.cfg.with_vtrace:
            return result
        action_distribution, *_, summaries = result
        cfg = self.cfg

        def targets_and_advantages(values, ratios):
            args = (cfg.gamma, cfg.vtrace_rho, cfg.vtrace_c, cfg.recurrence)
            return vtrace(values, mb.rewards_cpu, mb.dones_cpu, ratios, mb.vtrace_bootstrap, *args)

        with self.timing.add_time("losses"):
            values = summaries["values"].squeeze()
            *losses, extra = cc4_losses(
                self, mb, num_invalids, action_distribution, values, summaries["ratio"], targets_and_advantages
            )
        summaries.update(extra)
        return action_distribution, *losses, summaries

    return wrapper


def _anchor_to_new_best(save_best):
    """With `--best_anchor_coeff`, each new best checkpoint becomes the actors' anchor (`cage_sf.losses.BestAnchor`).
    SF calls `save_best` from the learner's event loop, between training iterations, so the swap never lands
    mid-update."""

    @functools.wraps(save_best)
    def wrapper(self, policy_id, metric, metric_value) -> bool:
        saved = save_best(self, policy_id, metric, metric_value)
        if saved:
            hold_new_best(self)
        return saved

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


def _report_episode_infos(process_env_step):
    """SF 2.1.1's batched sampler reads an episode's statistics only from infos given as one dict of tensors; from
    a list of per-agent info dicts (a TODO in its code) it drops `episode_extra_stats` and `true_objective`, which
    the non-batched sampler reports: training on a vector env would lose cc4/eval_return and the best-checkpoint
    metric. Report them for the agents whose episode just ended, as the non-batched sampler does (a missing
    `true_objective` means the episode's reward; None keeps the episode out of that statistic)."""

    @functools.wraps(process_env_step)
    def wrapper(self, rewards, dones_orig, infos):
        reports = process_env_step(self, rewards, dones_orig, infos)
        if not reports or not isinstance(infos, (list, tuple)):
            return reports
        stats = reports[0][EPISODIC]
        finished = dones_orig.cpu().nonzero(as_tuple=True)[0].tolist()
        extra: dict[str, list[float]] = {}
        objectives = []
        for agent, episode_reward in zip(finished, stats["reward"], strict=True):
            info = infos[agent]
            for key, value in info.get("episode_extra_stats", {}).items():
                extra.setdefault(key, []).append(value)
            if (objective := info.get("true_objective", episode_reward)) is not None:
                objectives.append(objective)
        stats["episode_extra_stats"] = {key: np.asarray(values) for key, values in extra.items()}
        if objectives:
            stats["true_objective"] = np.asarray(objectives)
        return reports

    return wrapper
