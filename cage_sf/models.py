"""One Sample Factory policy with separate networks per CC4 agent type, invalid actions masked.

blue_agent_0..3 (obs 92, 82 actions) and blue_agent_4 (obs 210, 242 actions) each get their own actor
over their own features (CC4 vector + memory; `--actor`: an MLP per type, or the entity model with shared
host encoders and per-type heads, `agent/cc4_networks.py`, which the exported agent runs) and
their own value MLP over the whole team's features (the reward is the team's; with `--privileged_critic` also
the simulator's true state, which the actors never read); every sample is routed by its `agent_type`
observation. Masked logits are a large finite negative number, so sampling, the learner's log-probs, entropy
and KL all agree. With `--messages` each agent also samples the 8 bits it sends its team
this step (the env's action space is then a tuple: the action, then 8 two-way bits); their log-probs add to
the action's, so V-trace and the policy gradient train the message heads with the rest.

The four small-subnet agents of one env step share the team input, so each critic runs once per distinct
input row (the same values and gradients, about a third less of the learner's cost). All five share it, and the
reward: `--team_critic` gives them one critic, run once per env step (half the critics' work again). With V-trace the
inference worker's call (`forward` without `values_only`) runs no critic at all: the learner recomputes every
value it uses (sf_compat), and the critics are most of the model's cost.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from sample_factory.algo.utils.action_distributions import get_action_distribution
from sample_factory.algo.utils.context import global_model_factory
from sample_factory.algo.utils.tensor_dict import TensorDict
from sample_factory.model.actor_critic import ActorCritic
from sample_factory.model.model_utils import model_device
from sample_factory.utils.typing import ActionSpace, Config, ObsSpace
from torch import Tensor, nn

from cage_sf import cc4, sf_compat
from cage_sf.adapter import FEATURES, NUM_ACTIONS, PADDED_FEATURES, TEAM_SIZE
from cage_sf.agent.cc4_networks import ACTIVATIONS, MESSAGE_BITS, make_actors, mlp
from cage_sf.sim.env import PRIVILEGED_STATE_SIZE

sf_compat.apply()

MASKED_LOGIT = -1e9


def model_config(cfg: Config) -> dict:
    """The actor networks' description (a submission's model.json holds it): from a training config or a run's
    config.json (runs from before the entity model have no `actor`: an MLP)."""
    settings = cfg if isinstance(cfg, Mapping) else vars(cfg)
    return {
        "format": "cage-sf/2",
        "memory": settings.get("memory_version"),  # set by train.resolve_config, kept in a run's config.json
        "actor": settings.get("actor", "mlp"),
        "entity_width": settings.get("entity_width", 64),
        "messages": settings.get("messages", False),
        "factored": settings.get("factored_actions", False),
        "hidden": list(settings["encoder_mlp_layers"]),
        "nonlinearity": settings["nonlinearity"],
        "masked_logit": MASKED_LOGIT,
        "layouts": [cc4.agent_layout(kind, settings.get("host_memory", True)) for kind in (cc4.SMALL, cc4.LARGE)],
    }


def _rows_by_type(agent_type: Tensor) -> list[Tensor]:
    """Row indices of the small-subnet agents, then of the large-subnet agent."""
    return [torch.nonzero(agent_type[:, 0] < 0.5).squeeze(1), torch.nonzero(agent_type[:, 0] >= 0.5).squeeze(1)]


class CC4ActorCritic(ActorCritic):
    def __init__(self, obs_space: ObsSpace, action_space: ActionSpace, cfg: Config):
        super().__init__(obs_space, action_space, cfg)  # feed-forward, separate critics: params.COMBINATIONS
        self.values_at_inference = not cfg.with_vtrace  # GAE reads the values the inference worker stored
        self.messages = cfg.messages
        activation = ACTIVATIONS[cfg.nonlinearity]
        self.actors = make_actors(model_config(cfg))
        self.privileged = cfg.privileged_critic
        self.critic_size = TEAM_SIZE + (PRIVILEGED_STATE_SIZE if self.privileged else 0)
        self.team_critic = cfg.team_critic  # one value MLP for all five agents, else one per agent type
        self.critics = nn.ModuleList(
            mlp([self.critic_size, *cfg.encoder_mlp_layers, 1], activation) for _ in range(1 if self.team_critic else 2)
        )
        self.apply(self.initialize_weights)
        # two random projections that identify equal critic input rows (not learned, not saved)
        projections = torch.randn(self.critic_size, 2, generator=torch.Generator().manual_seed(0))
        self.register_buffer("input_keys", projections, persistent=False)

    def device_for_input_tensor(self, input_tensor_name: str) -> torch.device:
        return model_device(self)

    def type_for_input_tensor(self, input_tensor_name: str) -> torch.dtype:
        return torch.float32

    def forward_head(self, normalized_obs_dict: dict[str, Tensor]) -> Tensor:
        """Feed-forward model: the head only packs the inputs the tail routes per agent type."""
        obs = normalized_obs_dict
        critic = [obs["team"], obs["state"]] if self.privileged else [obs["team"]]
        return torch.cat([obs["obs"], *critic, obs["agent_type"], obs["valid_actions"]], dim=1)

    def forward_core(self, head_output: Tensor, rnn_states: Tensor) -> tuple[Tensor, Tensor]:
        return head_output, rnn_states

    def forward_tail(
        self, core_output: Tensor, values_only: bool, sample_actions: bool, values: bool = True
    ) -> TensorDict:
        """`values=False` leaves the values at 0 (the inference worker's call under V-trace)."""
        obs, critic_input, agent_type, valid = torch.split(
            core_output, [PADDED_FEATURES, self.critic_size, 1, NUM_ACTIONS], dim=1
        )
        rows = _rows_by_type(agent_type)

        compute_values = values or values_only
        value = self._values(critic_input, rows) if compute_values else core_output.new_zeros(core_output.shape[0])
        result = TensorDict(values=value.squeeze())
        if values_only:
            return result
        logits = self.actor_logits(obs, agent_type, valid, rows)
        self.last_action_distribution = get_action_distribution(self.action_space, logits)
        result["action_logits"] = logits
        self._maybe_sample_actions(sample_actions, result)
        return result

    def actor_logits(self, obs: Tensor, agent_type: Tensor, valid: Tensor, rows: list[Tensor] | None = None) -> Tensor:
        """The actors' masked logits (then the message bits' logits, if any) from the `obs`, `agent_type` and
        `valid_actions` inputs; `rows`: the row indices of each agent type, when the caller has them."""
        rows = _rows_by_type(agent_type) if rows is None else rows
        # A busy agent (mid multi-step action) has one valid action, Sleep: its probability is 1 whatever the actor
        # says, so the actor runs on the rows with a choice only (about half; all of them with messages, whose bits
        # a busy agent still chooses) and a busy row keeps logit 0 on Sleep: the same distribution, for less work.
        logits = obs.new_zeros((obs.shape[0], NUM_ACTIONS))
        if self.messages:  # 2 logits per message bit, after the actions': the tuple distribution's layout
            message_logits = obs.new_zeros((obs.shape[0], 2 * MESSAGE_BITS))
        choosing = torch.ones_like(agent_type[:, 0], dtype=torch.bool) if self.messages else valid.sum(dim=1) > 1.5
        for kind, idx in enumerate(rows):
            idx = idx[choosing[idx]]
            if len(idx) == 0:
                continue
            actions = cc4.NUM_ACTIONS[kind]
            out = self.actors.logits(obs[idx, : FEATURES[kind]], valid[idx, :actions], kind)
            logits[idx, :actions] = out[:, :actions]
            if self.messages:
                message_logits[idx] = out[:, actions:]
        logits = logits.masked_fill(valid < 0.5, MASKED_LOGIT)
        return torch.cat([logits, message_logits], dim=1) if self.messages else logits

    def _values(self, inputs: Tensor, rows: list[Tensor]) -> Tensor:
        """Each critic once per distinct input row. Rows are grouped by one random projection of the row and the
        grouping checked with a second (distinct rows agreeing on both is a ~1e-14 accident); when the check
        fails, every row is evaluated. Cheaper than `torch.unique(dim=0)`, which sorts whole rows."""
        keys = inputs @ self.input_keys
        values = inputs.new_zeros(inputs.shape[0])
        if self.team_critic:
            rows = [torch.arange(inputs.shape[0], device=inputs.device)]
        for critic, idx in zip(self.critics, rows, strict=True):
            if len(idx) == 0:
                continue
            _, group = torch.unique(keys[idx, 0], return_inverse=True)
            order = torch.arange(len(idx), device=idx.device)
            first = torch.full((int(group.max()) + 1,), len(idx), device=idx.device).scatter_reduce_(
                0, group, order, "amin"
            )
            if not torch.equal(keys[idx[first[group]], 1], keys[idx, 1]):
                first, group = order, order
            values[idx] = critic(inputs[idx[first]]).squeeze(1)[group]
        return values

    def _maybe_sample_actions(self, sample_actions: bool, result: TensorDict) -> None:
        """Inverse-CDF sampling with one uniform number per agent: the same categorical distribution as SF's
        `torch.multinomial`, which draws an exponential per action (242 per agent), half the inference cost.
        Message bits (a tuple action space) are sampled alongside; the log-prob is the sum, as SF's learner takes it."""
        if not sample_actions:
            return
        distribution = self.last_action_distribution
        parts = distribution.distributions if self.messages else [distribution]
        probs = parts[0].probs
        cdf = probs.cumsum(dim=1)
        u = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]
        actions = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)
        # u rounded up to the total (p ~ 1e-7) would land on a masked action: take the likeliest one instead
        actions = torch.where(probs.gather(1, actions) > 0, actions, probs.argmax(dim=1, keepdim=True))
        if self.messages:
            bit_probs = torch.stack([bit.probs[:, 1] for bit in parts[1:]], dim=1)
            actions = torch.cat([actions, (torch.rand_like(bit_probs) < bit_probs).long()], dim=1)
        result["log_prob_actions"] = distribution.log_prob(actions)
        result["actions"] = actions.squeeze(1)

    def forward(
        self, normalized_obs_dict: dict[str, Tensor], rnn_states: Tensor, values_only: bool = False
    ) -> TensorDict:
        x, new_rnn_states = self.forward_core(self.forward_head(normalized_obs_dict), rnn_states)
        result = self.forward_tail(x, values_only, sample_actions=True, values=self.values_at_inference)
        result["new_rnn_states"] = new_rnn_states
        return result


def make_cc4_actor_critic(cfg: Config, obs_space: ObsSpace, action_space: ActionSpace) -> ActorCritic:
    return CC4ActorCritic(obs_space, action_space, cfg)


global_model_factory().register_actor_critic_factory(make_cc4_actor_critic)
