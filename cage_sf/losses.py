"""The learner's losses for CC4: V-trace targets on every sample, policy-side losses on decisions only, and the
anchors that keep the actors near a reference policy (the imitated one, or the run's best so far) while they learn.

A *decision* is a sample Sample Factory counts as valid (`valids`: not from a too-old policy) on which the agent
had a choice. An agent mid multi-step action (about half of all samples) has only Sleep: its probability is 1,
so it carries no policy gradient, yet averaged in it would scale the advantage statistics, the policy loss, the
entropy bonus and the KL with the busy share. Those all average over decisions here; the value loss keeps
every valid sample (a busy state's value is still a value, and V-trace bootstraps from it). With `--messages`
every valid sample is a decision: the bits an agent sends are chosen on every step, busy or not.

Kickstarting (Schmitt et al. 2018): with `--anchor_coeff` the actors also pay KL(teacher || actor) on decisions,
the teacher being the run's imitated policy, frozen (saved by `cage_sf.imitation.warm_start`). Its weight falls
linearly to `--anchor_floor` over `--anchor_decay_steps` (agent steps, Sample Factory's step unit) and stays
there: without a floor a long run drifts ever further from the teacher until it collapses (docs/experiments.md).
`--best_anchor_coeff` anchors the actors the same way to the run's best policy so far (its best checkpoint, which
moves with every new best): a trust region around the best, against the mid-run falls of runs from scratch.
`--critic_warmup_steps` trains only the critics at the start, so the first policy updates use a critic fitted to
the policy's own returns. `--entropy_decay_to` lowers the entropy bonus over the run (`cage_sf.schedules`).

The flat entropy is H(command) + E[H(target | command)], and the target part is most of it (about 2 nats of 3.4 for a
small agent, where Analyse, Remove and DeployDecoy keep near-uniform targets): a bonus on it holds every command's
targets near uniform, so the sampled policy plays far worse than its greedy choice. `--target_entropy_share` keeps
the bonus on which command is chosen and weighs the target part by the share.
"""

from __future__ import annotations

from pathlib import Path

import torch
from sample_factory.algo.utils.action_distributions import get_action_distribution
from sample_factory.model.actor_critic import create_actor_critic
from torch import Tensor

from cage_sf import cc4, schedules
from cage_sf.adapter import COMMAND_OF_ACTION, NUM_ACTIONS

ANCHOR_FILE = "teacher_anchor.pth"
COMMAND_OF = torch.from_numpy(COMMAND_OF_ACTION)  # [agent type, NUM_ACTIONS] -> cc4.COMMANDS index


def anchor_path(cfg) -> Path:
    """Where a run keeps its frozen teacher (checkpoints rotate; this file stays)."""
    return Path(cfg.train_dir, cfg.experiment, ANCHOR_FILE)


def free_rows(mb) -> Tensor:
    """Valid samples on which the agent could choose among more than one action."""
    return mb.valids & (mb.normalized_obs["valid_actions"].sum(dim=1) > 1.5)


def decisions(mb, messages: bool) -> Tensor:
    """Valid samples that carry a choice: the free rows, or with `--messages` every valid row (a busy agent
    still chooses the bits it sends, and they still earn or lose reward)."""
    return mb.valids if messages else free_rows(mb)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of `x` over `mask` (0 when the mask is empty; values outside it, even non-finite, never count)."""
    return torch.where(mask, x, torch.zeros_like(x)).sum() / mask.sum().clamp_min(1)


def masked_std_mean(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask).sqrt(), mean


def command_probabilities(logits: Tensor, valid: Tensor, kinds: Tensor) -> tuple[Tensor, Tensor]:
    """Each command's probability (summed over its targets) under `logits` [rows, NUM_ACTIONS], and which commands
    the mask offers on each row (the small type's padding column is neither)."""
    command = COMMAND_OF.to(logits.device)[kinds]
    probs = torch.softmax(logits, dim=1)
    by_command = probs.new_zeros(len(probs), len(cc4.COMMANDS) + 1).scatter_add(1, command, probs)
    offered = torch.zeros_like(by_command).scatter_add_(1, command, valid.float()) > 0
    return by_command[:, : len(cc4.COMMANDS)], offered[:, : len(cc4.COMMANDS)]


def command_entropy(logits: Tensor, valid: Tensor, kinds: Tensor) -> Tensor:
    """H(command) per row: the entropy of which command the policy chooses. The flat entropy is
    H(command) + E_command[H(target | command)], whatever the actor's head (flat or factored)."""
    by_command, _ = command_probabilities(logits, valid, kinds)
    return -(by_command * torch.log(by_command.clamp_min(1e-30))).sum(dim=1)


def explained_variance(values: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """1 - Var(targets - values) / Var(targets) over `mask`: 1 for a perfect critic, 0 for a constant one."""
    target_std, _ = masked_std_mean(targets, mask)
    error_std, _ = masked_std_mean(targets - values, mask)
    return 1.0 - error_std**2 / target_std.clamp_min(1e-8) ** 2


class PolicyAnchor:
    """A frozen copy of the actor-critic whose actors the learner's are pulled toward: KL(anchor || actor) on the
    free rows, times `weight(env_steps)`. What the anchor holds and what it weighs is the subclass's."""

    active = True  # whether it holds a policy yet

    def __init__(self, model: torch.nn.Module):
        self.policy = model.requires_grad_(False)

    def weight(self, env_steps: int) -> float:
        raise NotImplementedError

    def kl(self, normalized_obs: dict[str, Tensor], log_probs: Tensor) -> Tensor:
        """Per-sample KL(anchor || actor) over the actions (message bits, if any, are the actor's own)."""
        with torch.no_grad():  # the actors straight from the inputs: no packed head for the critics (learner profile)
            obs = normalized_obs
            logits = self.policy.actor_logits(obs["obs"], obs["agent_type"], obs["valid_actions"])
            anchor_log_probs = torch.log_softmax(logits[:, :NUM_ACTIONS], dim=1)
        return (anchor_log_probs.exp() * (anchor_log_probs - log_probs)).sum(dim=1)


class TeacherAnchor(PolicyAnchor):
    """The imitated policy, frozen, and the decaying weight of the actors' KL to it."""

    def __init__(self, teacher: torch.nn.Module, path: Path, coeff: float, decay_steps: int, floor: float = 0.0):
        super().__init__(teacher)
        self.policy.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.coeff, self.decay_steps, self.floor = coeff, decay_steps, floor

    def weight(self, env_steps: int) -> float:
        return self.floor + (self.coeff - self.floor) * max(0.0, 1.0 - env_steps / self.decay_steps)


class BestAnchor(PolicyAnchor):
    """The policy of the run's best checkpoint so far, with a constant weight (inactive until there is one). Sample
    Factory saves a best checkpoint whenever the training return averaged over `stats_avg` episodes beats every
    earlier average; the anchor then moves to it, so a policy that drifts below its best is pulled back while every
    improvement carries the anchor with it."""

    def __init__(self, model: torch.nn.Module, coeff: float, checkpoint: Path | None = None):
        super().__init__(model)
        self.coeff, self.active = coeff, False
        if checkpoint is not None:  # a resumed run: its best checkpoint so far
            self.hold(torch.load(checkpoint, map_location="cpu", weights_only=True)["model"])

    def hold(self, state_dict: dict[str, Tensor]) -> None:
        self.policy.load_state_dict(state_dict)
        self.active = True

    def weight(self, env_steps: int) -> float:
        return self.coeff


def _action_log_probs(distribution) -> Tensor:
    """Log-probabilities of the actions (the first part of a tuple distribution with message bits)."""
    parts = getattr(distribution, "distributions", [distribution])
    return parts[0].log_probs


def _frozen_model(learner) -> torch.nn.Module:
    """A fresh actor-critic of the learner's shape, on its device, for an anchor to load a policy into."""
    info = learner.env_info
    return create_actor_critic(learner.cfg, info.obs_space, info.action_space).to(learner.device)


def _teacher_anchor(learner) -> TeacherAnchor | None:
    """The learner's anchor to the imitated policy, loaded once (None without `--anchor_coeff`)."""
    if "_teacher_anchor" not in vars(learner):
        cfg = learner.cfg
        learner._teacher_anchor = (
            TeacherAnchor(
                _frozen_model(learner), anchor_path(cfg), cfg.anchor_coeff, cfg.anchor_decay_steps, cfg.anchor_floor
            )
            if cfg.anchor_coeff > 0
            else None
        )
    return learner._teacher_anchor


def _best_anchor(learner) -> BestAnchor | None:
    """The learner's anchor to its best policy so far, made once (None without `--best_anchor_coeff`); a resumed
    run starts from its best checkpoint."""
    if "_best_anchor" not in vars(learner):
        cfg = learner.cfg
        saved = sorted(Path(learner.checkpoint_dir(cfg, learner.policy_id)).glob("best_*.pth"))
        learner._best_anchor = (
            BestAnchor(_frozen_model(learner), cfg.best_anchor_coeff, saved[-1] if saved else None)
            if cfg.best_anchor_coeff > 0
            else None
        )
    return learner._best_anchor


def hold_new_best(learner) -> None:
    """Sample Factory has just saved a new best checkpoint: the best anchor (if any) moves to the actors as saved."""
    anchor = _best_anchor(learner)
    if anchor is not None:
        anchor.hold(learner.actor_critic.state_dict())


def cc4_losses(learner, mb, num_invalids: int, action_distribution, values: Tensor, ratio: Tensor, vtrace_fn) -> tuple:
    """Sample Factory's `_calculate_losses` outputs after its model forward: (policy, exploration, kl_old, kl,
    value losses, summaries). `vtrace_fn(values, ratios)` gives the V-trace targets and advantages; a sample SF
    marks invalid cuts the traces there (ratio 0: its own value is its target and nothing propagates through it)."""
    cfg, valids = learner.cfg, mb.valids
    chosen = decisions(mb, cfg.messages)
    with torch.no_grad():
        vs, adv = vtrace_fn(values.cpu(), torch.where(valids, ratio, torch.zeros_like(ratio)).cpu())
        targets, adv = vs.to(values.device), adv.to(values.device)
        adv_std, adv_mean = masked_std_mean(adv, chosen)
        adv = (adv - adv_mean) / adv_std.clamp_min(1e-7)

    low = 1.0 / (1.0 + cfg.ppo_clip_ratio)
    high = 1.0 + cfg.ppo_clip_ratio
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, low, high) * adv)
    policy_loss = -masked_mean(surrogate, chosen)
    entropy = masked_mean(action_distribution.entropy(), chosen)
    obs = mb.normalized_obs
    commands_entropy = masked_mean(
        command_entropy(_action_log_probs(action_distribution), obs["valid_actions"], obs["agent_type"][:, 0].long()),
        chosen,
    )
    entropy_scale = schedules.entropy_scale(learner)
    if cfg.exploration_loss == "entropy":  # H(command) + share x H(target | command), as SF's mean when share = 1
        bonus = cfg.target_entropy_share * entropy + (1.0 - cfg.target_entropy_share) * commands_entropy
        exploration_loss = -entropy_scale * cfg.exploration_loss_coeff * bonus
    else:
        exploration_loss = entropy_scale * (
            learner.exploration_loss_func(action_distribution, chosen, int((~chosen).sum())) if chosen.any() else 0.0
        )

    behaviour = get_action_distribution(learner.actor_critic.action_space, mb.action_logits)
    kl_old = action_distribution.kl_divergence(behaviour)
    kl_loss = cfg.kl_loss_coeff * masked_mean(kl_old, chosen)
    summaries = {}
    for name, anchor in (("anchor", _teacher_anchor(learner)), ("best_anchor", _best_anchor(learner))):
        if anchor is not None and anchor.active:
            kl = masked_mean(anchor.kl(mb.normalized_obs, _action_log_probs(action_distribution)), free_rows(mb))
            weight = anchor.weight(learner.env_steps)
            kl_loss = kl_loss + weight * kl
            summaries.update({f"{name}_kl": kl, f"{name}_weight": weight})
    if learner.env_steps < cfg.critic_warmup_steps:  # the critics only: the actors' gradients are all 0
        policy_loss, exploration_loss, kl_loss = 0.0 * policy_loss, 0.0 * exploration_loss, 0.0 * kl_loss

    # unclipped: clipping reads values stored at inference, which under V-trace are not computed (cage_sf.models)
    value_loss = learner._value_loss(values, values.detach(), targets, cfg.ppo_clip_value, valids, num_invalids)
    kl_valid = kl_old[chosen] if chosen.any() else kl_old.new_zeros(1)
    summaries.update(
        adv=adv,
        adv_std=adv_std,
        adv_mean=adv_mean,
        decision_entropy=entropy,
        command_entropy=commands_entropy,
        decision_fraction=chosen.float().mean(),
        entropy_coeff=entropy_scale * cfg.exploration_loss_coeff,
        value_explained_variance=explained_variance(values.detach(), targets, chosen),
    )
    return policy_loss, exploration_loss, kl_valid, kl_loss, value_loss, summaries
