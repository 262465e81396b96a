"""The actor networks of a cage-sf policy: what training optimises and what a submission runs (shipped inside
every submission: torch and `cc4_memory` only). `make_actors(config)` builds them from a submission's
model.json (or training's equivalent); both kinds map an agent type's features (`AgentMemories.features()`)
and its action mask to logits over its own actions.

`mlp`     one MLP per agent type over the flat features (the baseline).
`entity`  every host slot is an entity: one encoder shared by every slot of both agent types reads the
          slot's flags and memory (plus: exists, server); each defended subnet pools its hosts and reads its
          own facts (blocked sources, comms policy); a context pools the subnets and reads the phase, the
          agent's own features and the messages it received. Per agent type, output heads give per-host
          logits (Analyse, Remove, Restore, DeployDecoy), per-subnet logits (Allow and Block from each of the
          8 other subnets) and Monitor / Sleep: the same weights score every host, whichever slots exist.

With `factored` (model.json), both kinds also give one logit per command, and an action's logit is
log P(command) + log P(target | command): the scores above become each command's target logits, normalised over
the command's valid targets. The flat distribution is the product of the two, so sampling, masking and CybORG's
flat action index are unchanged, while exploration (and an entropy bonus) acts on what to do before where.

With `messages` (model.json), both kinds also give 2 logits per bit of the 8-bit message the agent sends each
step (after its action logits): the message is sampled with the action and trained with it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

try:  # imported as submission.cc4_networks (the zip layout) or as cage_sf.agent.cc4_networks
    from . import cc4_memory
except ImportError:  # imported as a top-level module (a directory on sys.path)
    import cc4_memory

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}
HOST_COMMANDS = ("Analyse", "Remove", "Restore", "DeployDecoy")  # per-host logits, in this order
TRAFFIC_COMMANDS = ("AllowTrafficZone", "BlockTrafficZone")  # per-subnet logits: 8 sources each
OWN_COMMANDS = ("Monitor", "Sleep")
SOURCES = 8  # the other subnets a defended subnet's traffic rules name
MESSAGE_BITS = 8  # CC4: every agent may send 8 bits per step to the other four


def mlp(sizes: list[int], activation: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), activation()]
    return nn.Sequential(*layers[:-1])


def make_actors(config: dict) -> MLPActors | EntityActors:
    activation = ACTIVATIONS[config["nonlinearity"]]
    message_logits = 2 * MESSAGE_BITS if config.get("messages", False) else 0
    factored = config.get("factored", False)
    if config.get("actor", "mlp") == "entity":
        return EntityActors(config["layouts"], config["entity_width"], activation, message_logits, factored)
    return MLPActors(config["layouts"], config["hidden"], activation, message_logits, factored)


def command_blocks(layout: dict) -> list[tuple[int, int]]:
    """Each command's [start, end) in action order (CC4's actions are grouped by command)."""
    command = layout["command"]
    blocks = [(command.index(c), len(command) - command[::-1].index(c)) for c in range(len(layout["commands"]))]
    assert all(set(command[start:end]) == {c} for c, (start, end) in enumerate(blocks)), "commands not contiguous"
    return blocks


class CommandLayout:
    """Where each command's actions sit in the flat action order, as the index tensors `compose` gathers with
    (a copy per device; plain tensors, so the modules' state dicts are unchanged)."""

    def __init__(self, layout: dict):
        blocks = command_blocks(layout)
        self.count = len(blocks)
        actions, longest = len(layout["command"]), max(end - start for start, end in blocks)
        by_command = torch.full((len(blocks), longest), actions)  # padding: the -inf column `compose` appends
        for c, (start, end) in enumerate(blocks):
            by_command[c, : end - start] = torch.arange(start, end)
        self._on = {torch.device("cpu"): (by_command, torch.as_tensor(layout["command"]))}

    def on(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """([commands, longest block] action indices, padded; [actions] each action's command)."""
        if device not in self._on:
            self._on[device] = tuple(t.to(device) for t in self._on[torch.device("cpu")])
        return self._on[device]


def compose(targets: Tensor, commands: Tensor, valid: Tensor, layout: CommandLayout) -> Tensor:
    """Flat log-probabilities log P(command) + log P(target | command), each normalised over what `valid` offers
    (invalid actions get about -1e9). One gather into [batch, commands, longest block] and one logsumexp, not a
    loop over commands: at inference's small batches the loop's many small operations took twice as long."""
    by_command, of_action = layout.on(targets.device)
    targets = targets.masked_fill(valid < 0.5, -1e9)
    padded = torch.cat([targets, targets.new_full((targets.shape[0], 1), float("-inf"))], dim=1)
    totals = torch.logsumexp(padded[:, by_command], dim=2)  # a command with no valid action: about -1e9
    command_log_probs = torch.log_softmax(commands.masked_fill(totals < -5e8, -1e9), dim=1)
    return targets + (command_log_probs - totals)[:, of_action]


class MLPActors(nn.ModuleList):
    """One MLP per agent type over its flat features (with `factored`, also a logit per command)."""

    def __init__(
        self,
        layouts: list[dict],
        hidden: list[int],
        activation: type[nn.Module],
        message_logits: int = 0,
        factored: bool = False,
    ):
        super().__init__(
            mlp(
                [
                    cc4_memory.feature_size(layout),
                    *hidden,
                    len(layout["durations"]) + factored * len(layout["commands"]) + message_logits,
                ],
                activation,
            )
            for layout in layouts
        )
        self.commands = [CommandLayout(layout) for layout in layouts] if factored else None

    def logits(self, features: Tensor, valid: Tensor, kind: int) -> Tensor:
        out = self[kind](features)
        if self.commands is None:
            return out
        actions, commands = valid.shape[1], self.commands[kind].count
        flat = compose(out[:, :actions], out[:, actions : actions + commands], valid, self.commands[kind])
        return torch.cat([flat, out[:, actions + commands :]], dim=1)


class _Indices(nn.Module):
    """An agent type's gathers: its entities' inputs out of the flat features and its logits into action order
    (buffers derived from the layout, so not saved with the weights)."""

    def __init__(self, layout: dict):
        super().__init__()
        index = cc4_memory.feature_index(layout)
        commands = [layout["commands"][c] for c in layout["command"]]
        slots, subnets = len(index["host"]), len(index["subnet"])
        # concatenated logits: per-host commands (slot-minor), then Allow and Block (subnet-major), Monitor, Sleep
        offset, start = 0, {}
        for command, count in [(c, slots) for c in HOST_COMMANDS] + [(c, subnets * SOURCES) for c in TRAFFIC_COMMANDS]:
            start[command], offset = offset, offset + count
        start |= {command: offset + i for i, command in enumerate(OWN_COMMANDS)}
        order = [start[command] + commands[:action].count(command) for action, command in enumerate(commands)]
        buffers = {
            "host": index["host"],
            "subnet": index["subnet"],
            "agent": index["agent"],
            "exists": [action for action, command in enumerate(commands) if command == "Analyse"],  # by slot
            "server": np.asarray(layout["host_server"], np.float32),
            "order": order,
        }
        for name, value in buffers.items():
            self.register_buffer(name, torch.as_tensor(np.asarray(value)), persistent=False)


def _first_layer(linear: nn.Linear, hosts: Tensor, subnet: Tensor, context: Tensor) -> Tensor:
    """`linear` over [host, its subnet, context] for every host, without building that [B, slots, 3W] input:
    the subnet and context parts are computed once per subnet and once per agent, not once per host."""
    batch, slots, width = hosts.shape
    subnets = subnet.shape[1]
    from_host, from_subnet, from_context = linear.weight.split(width, dim=1)
    shared = subnet @ from_subnet.T + (context @ from_context.T + linear.bias)[:, None]  # [B, subnets, W]
    by_subnet = (hosts @ from_host.T).view(batch, subnets, slots // subnets, -1) + shared[:, :, None]
    return by_subnet.view(batch, slots, -1)


class _Heads(nn.Module):
    def __init__(self, width: int, activation: type[nn.Module], message_logits: int, command_logits: int):
        super().__init__()
        self.host = mlp([3 * width, width, len(HOST_COMMANDS)], activation)
        self.traffic = mlp([2 * width, width, len(TRAFFIC_COMMANDS) * SOURCES], activation)
        # Monitor, Sleep, then (factored) the command logits, then the message's
        self.own = mlp([width, width, len(OWN_COMMANDS) + command_logits + message_logits], activation)


class EntityActors(nn.Module):
    """Shared host, subnet and context encoders; output heads per agent type (see the module docstring)."""

    def __init__(
        self,
        layouts: list[dict],
        width: int,
        activation: type[nn.Module],
        message_logits: int = 0,
        factored: bool = False,
    ):
        super().__init__()
        index = cc4_memory.feature_index(layouts[0])
        host_inputs = index["host"].shape[1] + 2  # + exists, server
        self.host = mlp([host_inputs, width, width], activation)
        self.subnet = mlp([index["subnet"].shape[1] + 2 * width, width, width], activation)
        self.context = mlp([len(index["agent"]) + 2 * width, 2 * width, width], activation)
        self.heads = nn.ModuleList(
            _Heads(width, activation, message_logits, factored * len(layout["commands"])) for layout in layouts
        )
        self.indices = nn.ModuleList(_Indices(layout) for layout in layouts)
        self.commands = [CommandLayout(layout) for layout in layouts] if factored else None

    def logits(self, features: Tensor, valid: Tensor, kind: int) -> Tensor:
        index, heads = self.indices[kind], self.heads[kind]
        batch, slots, subnets = features.shape[0], len(index.host), len(index.subnet)
        exists = valid[:, index.exists] > 0.5  # [B, slots]
        host_inputs = [features[:, index.host], exists[..., None].float(), index.server.expand(batch, -1)[..., None]]
        hosts = self.host(torch.cat(host_inputs, dim=2))  # [B, slots, W]

        by_subnet = hosts.view(batch, subnets, slots // subnets, -1)
        present = exists.view(batch, subnets, -1, 1)
        count = present.sum(dim=2)
        mean = (by_subnet * present).sum(dim=2) / count.clamp(min=1)
        peak = by_subnet.masked_fill(~present, float("-inf")).amax(dim=2).masked_fill(count == 0, 0.0)
        subnet = self.subnet(torch.cat([features[:, index.subnet], mean, peak], dim=2))  # [B, subnets, W]

        pooled = [subnet.mean(dim=1), subnet.amax(dim=1)]
        context = self.context(torch.cat([features[:, index.agent], *pooled], dim=1))  # [B, W]

        host_logits = heads.host[1:](_first_layer(heads.host[0], hosts, subnet, context))
        traffic = heads.traffic(torch.cat([subnet, context[:, None].expand(-1, subnets, -1)], dim=2))
        traffic = traffic.view(batch, subnets, len(TRAFFIC_COMMANDS), SOURCES).transpose(1, 2)
        own = heads.own(context)
        flat = [host_logits.transpose(1, 2).reshape(batch, -1), traffic.reshape(batch, -1), own[:, : len(OWN_COMMANDS)]]
        logits = torch.cat(flat, dim=1)[:, index.order]
        rest = own[:, len(OWN_COMMANDS) :]
        if self.commands is not None:
            commands = self.commands[kind]
            logits, rest = compose(logits, rest[:, : commands.count], valid, commands), rest[:, commands.count :]
        return torch.cat([logits, rest], dim=1)
