"""The entity actor (`agent/cc4_networks.py`): every host scored by the same weights from its
own inputs, logits in CybORG's action order, whichever hosts exist."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cage_sf import cc4
from cage_sf.agent.cc4_memory import feature_index, feature_size
from cage_sf.agent.cc4_networks import EntityActors, _first_layer, make_actors
from cage_sf.models import model_config
from cage_sf.train import resolve_config

KINDS = (cc4.SMALL, cc4.LARGE)


@pytest.fixture(scope="module")
def actors() -> EntityActors:
    torch.manual_seed(0)
    actors = make_actors(model_config(resolve_config("smoke", ["--actor=entity", "--backend=synthetic"])))
    assert isinstance(actors, EntityActors)
    return actors.eval()


def inputs(kind: int, rows: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    features = torch.as_tensor(rng.random((rows, feature_size(cc4.agent_layout(kind)))), dtype=torch.float32)
    valid = torch.as_tensor(rng.random((rows, cc4.NUM_ACTIONS[kind])) < 0.8, dtype=torch.float32)
    return features, valid


def host_actions(kind: int, slot: int) -> list[int]:
    return [cc4.action_index(kind, command, slot) for command in ("Analyse", "Remove", "Restore", "DeployDecoy")]


@pytest.mark.parametrize("kind", KINDS)
def test_swapping_two_hosts_swaps_their_logits(actors, kind):
    """Two user slots of one subnet trade their inputs (flags, memory, existence): their per-host logits trade
    places and nothing else moves (the subnet pools its hosts without regard to order)."""
    features, valid = inputs(kind)
    subnet = cc4.SUBNETS[kind] - 1
    a, b = 16 * subnet + 7, 16 * subnet + 12
    host = torch.as_tensor(feature_index(cc4.agent_layout(kind))["host"])
    swapped_features, swapped_valid = features.clone(), valid.clone()
    swapped_features[:, host[a]], swapped_features[:, host[b]] = features[:, host[b]], features[:, host[a]]
    for x, y in zip(host_actions(kind, a), host_actions(kind, b), strict=True):
        swapped_valid[:, x], swapped_valid[:, y] = valid[:, y], valid[:, x]
    with torch.no_grad():
        logits, swapped = actors.logits(features, valid, kind), actors.logits(swapped_features, swapped_valid, kind)
    permutation = list(range(cc4.NUM_ACTIONS[kind]))
    for x, y in zip(host_actions(kind, a), host_actions(kind, b), strict=True):
        permutation[x], permutation[y] = y, x
    torch.testing.assert_close(swapped, logits[:, permutation])
    assert not torch.allclose(logits[:, host_actions(kind, a)], logits[:, host_actions(kind, b)])


@pytest.mark.parametrize("kind", KINDS)
def test_a_host_that_does_not_exist_changes_nothing_else(actors, kind):
    """A slot whose host does not exist this episode (its host actions masked) may hold any inputs: only its
    own (masked) logits follow them."""
    features, valid = inputs(kind)
    slot = 16 * (cc4.SUBNETS[kind] - 1) + 3
    valid[:, host_actions(kind, slot)] = 0.0
    changed = features.clone()
    changed[:, torch.as_tensor(feature_index(cc4.agent_layout(kind))["host"][slot])] += 1.0
    with torch.no_grad():
        logits, after = actors.logits(features, valid, kind), actors.logits(changed, valid, kind)
    others = [a for a in range(cc4.NUM_ACTIONS[kind]) if a not in host_actions(kind, slot)]
    torch.testing.assert_close(after[:, others], logits[:, others])
    assert not torch.allclose(after[:, host_actions(kind, slot)], logits[:, host_actions(kind, slot)])


@pytest.mark.parametrize("kind", KINDS)
def test_logits_land_in_cyborgs_action_order(kind):
    """With every head's output set to a known constant per command and source subnet, each action index gets
    the value of its command (and, for traffic, its position among the 8 sources) as cc4.py enumerates them."""
    torch.manual_seed(0)
    actors = make_actors(model_config(resolve_config("smoke", ["--actor=entity", "--backend=synthetic"])))
    heads = actors.heads[kind]
    with torch.no_grad():
        for head, bias in ((heads.host, [1.0, 2.0, 3.0, 4.0]), (heads.traffic, 100 + torch.arange(16.0))):
            head[-1].weight.zero_()
            head[-1].bias.copy_(torch.as_tensor(bias))
        heads.own[-1].weight.zero_()
        heads.own[-1].bias.copy_(torch.tensor([-1.0, -2.0]))
        logits = actors.logits(*inputs(kind), kind)
    value = {"Analyse": 1, "Remove": 2, "Restore": 3, "DeployDecoy": 4, "Monitor": -1, "Sleep": -2}
    expected, seen = [], {}
    for command in cc4.action_commands(kind):
        k = seen[command] = seen.get(command, -1) + 1
        if command in value:
            expected.append(value[command])
        else:  # the 8 sources of each defended subnet in turn: Allow 100..107, Block 108..115
            expected.append(100 + 8 * (command == "BlockTrafficZone") + k % 8)
    assert (logits == torch.tensor(expected, dtype=torch.float32)).all()


@pytest.mark.parametrize("kind", KINDS)
def test_no_host_valid_gives_finite_logits_and_gradients(actors, kind):
    """A busy agent's mask allows only Sleep, so no host reads as existing: pooling over none stays finite."""
    features, _ = inputs(kind)
    features.requires_grad_(True)
    only_sleep = torch.zeros(4, cc4.NUM_ACTIONS[kind])
    only_sleep[:, cc4.sleep_action(kind)] = 1
    logits = actors.logits(features, only_sleep, kind)
    logits.sum().backward()
    assert torch.isfinite(logits).all() and torch.isfinite(features.grad).all()


def test_the_host_heads_first_layer_is_the_linear_map_of_host_subnet_and_context():
    """`_first_layer` computes the subnet and context parts once; the result is the plain concatenated input's."""
    torch.manual_seed(0)
    width, subnets, per_subnet = 8, 3, 16
    linear = torch.nn.Linear(3 * width, 5)
    hosts, subnet, context = (
        torch.randn(2, subnets * per_subnet, width),
        torch.randn(2, subnets, width),
        torch.randn(2, width),
    )
    concatenated = torch.cat(
        [hosts, subnet.repeat_interleave(per_subnet, dim=1), context[:, None].expand(-1, subnets * per_subnet, -1)], 2
    )
    torch.testing.assert_close(_first_layer(linear, hosts, subnet, context), linear(concatenated))


def test_the_entity_actor_is_smaller_than_the_mlp():
    cfg = resolve_config("smoke", ["--backend=synthetic"])
    sizes = {
        actor: sum(p.numel() for p in make_actors(model_config(vars(cfg) | {"actor": actor})).parameters())
        for actor in ("mlp", "entity")
    }
    assert sizes["entity"] < sizes["mlp"] / 2


def test_the_model_cost_benchmark_times_every_actor():
    """bench/model_cost.py runs end to end on a tiny batch and reports each actor, the team critic and the ratios."""
    repo = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "bench/model_cost.py", "--batch=10", "--repeats=1"],
        cwd=repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(report["us_per_sample"]) == {"mlp", "entity", "entity, team critic"} and report["ratio"] > 0
    assert report["team_critic_ratio"] > 0


def test_a_composed_distribution_is_the_command_choice_times_the_target_choice():
    """compose(): P(action) = P(its command among the offered ones) * P(action among its command's valid ones)."""
    from cage_sf.agent.cc4_networks import CommandLayout, command_blocks, compose

    layout = cc4.agent_layout(cc4.LARGE)
    blocks = command_blocks(layout)
    assert [layout["commands"][layout["command"][a]] for a, _ in blocks] == list(cc4.COMMANDS)
    gen = torch.Generator().manual_seed(0)
    targets, commands = torch.randn(6, cc4.NUM_ACTIONS[cc4.LARGE], generator=gen), torch.randn(6, 8, generator=gen)
    valid = (torch.rand(targets.shape, generator=gen) < 0.5).float()
    monitor, _ = blocks[cc4.COMMANDS.index("Monitor")]
    valid[:, monitor] = 0.0  # a command with nothing valid is never chosen
    probs = compose(targets, commands, valid, CommandLayout(layout)).exp()
    offered = torch.tensor([[valid[r, a:b].any() for a, b in blocks] for r in range(6)])
    command_probs = torch.softmax(commands.masked_fill(~offered, float("-inf")), dim=1)
    for c, (a, b) in enumerate(blocks):
        assert probs[:, a:b].sum(dim=1) == pytest.approx(command_probs[:, c], abs=1e-6)
        within = torch.softmax(targets[:, a:b].masked_fill(valid[:, a:b] < 0.5, float("-inf")), dim=1).nan_to_num()
        assert probs[:, a:b] == pytest.approx(within * command_probs[:, c : c + 1], abs=1e-6)
    assert probs.sum(dim=1) == pytest.approx(torch.ones(6), abs=1e-6)
    assert (probs[valid < 0.5] == 0).all()


@pytest.mark.parametrize("actor", ["mlp", "entity"])
def test_factored_actors_give_a_distribution_over_valid_actions_with_messages_after(actor):
    config = model_config(resolve_config("smoke", [f"--actor={actor}", "--factored_actions=True", "--messages=True"]))
    actors = make_actors(config)
    for kind in KINDS:
        features, valid = inputs(kind)
        with torch.no_grad():
            out = actors.logits(features, valid, kind)
        actions = cc4.NUM_ACTIONS[kind]
        assert out.shape == (len(features), actions + 16)
        log_probs = out[:, :actions]  # already normalised over the valid actions
        assert torch.exp(log_probs).sum(dim=1) == pytest.approx(torch.ones(len(features)), abs=1e-5)
        assert (log_probs[valid < 0.5] < -1e8).all()
