"""`cage-sf export`: a training checkpoint -> a CAGE Challenge 4 submission CybORG's evaluation loads.

The submission holds `submission.py`, `cc4_agent.py` and `cc4_memory.py` (from `submission_template/`, torch +
numpy only), `model.safetensors` (actor weights, no pickle) and `model.json` (network shape, the agent
layouts the memory needs, submission info).
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from cage_sf import cc4
from cage_sf.adapter import FEATURES, LAYOUTS
from cage_sf.errors import UsageError
from cage_sf.models import MASKED_LOGIT
from cage_sf.runs import find_checkpoint, run_dir

TEMPLATE = Path(__file__).resolve().parent / "submission_template"
TEMPLATE_FILES = ("submission.py", "cc4_agent.py", "cc4_memory.py")


def model_config(cfg: dict) -> dict:
    return {
        "format": "cage-sf/2",
        "features": list(FEATURES),
        "num_actions": list(cc4.NUM_ACTIONS),
        "hidden": list(cfg["encoder_mlp_layers"]),
        "nonlinearity": cfg["nonlinearity"],
        "masked_logit": MASKED_LOGIT,
        "layouts": list(LAYOUTS),
    }


def actor_tensors(checkpoint: Path, config: dict) -> dict[str, torch.Tensor]:
    """The actor weights (and normaliser statistics) of a checkpoint, checked against the model config."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    except Exception as exc:
        raise UsageError(f"cannot read checkpoint {checkpoint}: {exc}".splitlines()[0]) from None
    tensors = {k: v.float().contiguous() for k, v in state.items() if k.startswith("actors.")}
    for kind, (n_obs, n_actions) in enumerate(zip(config["features"], config["num_actions"], strict=True)):
        sizes = [n_obs, *config["hidden"], n_actions]
        for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            weight = tensors.get(f"actors.{kind}.{2 * layer}.weight")
            if weight is None or tuple(weight.shape) != (n_out, n_in):
                found = None if weight is None else tuple(weight.shape)
                raise UsageError(
                    f"checkpoint {checkpoint.name} does not fit the run's model configuration "
                    f"(actors.{kind}.{2 * layer}.weight: expected {(n_out, n_in)}, found {found})"
                )
    return tensors


def export(experiment: str, out: Path, *, train_dir: str = "runs", checkpoint: str = "best",
           name: str = "cage-sf", team: str = "cage-sf", technique: str = "APPO + V-trace (Sample Factory)",
           greedy: bool = True, as_zip: bool = False, force: bool = False) -> Path:  # fmt: skip
    run = run_dir(experiment, train_dir)
    if out.exists() and (out.is_file() or any(out.iterdir())) and not force:
        raise UsageError(f"output {out} is not empty (use --force to overwrite)")
    cfg = json.loads((run / "config.json").read_text())
    config = model_config(cfg)
    source = find_checkpoint(run, checkpoint)
    tensors = actor_tensors(source, config)
    config |= {
        "greedy": greedy,
        "submission": {"name": name, "team": team, "technique": technique},
        "source": {"run": str(run), "checkpoint": source.name},
    }

    package = out / "submission" if as_zip else out
    if out.exists() and force:
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    package.mkdir(parents=True)
    for filename in TEMPLATE_FILES:
        shutil.copy(TEMPLATE / filename, package / filename)
    save_file(tensors, str(package / "model.safetensors"))
    (package / "model.json").write_text(json.dumps(config, indent=1))
    if not as_zip:
        return out
    (package / "__init__.py").write_text("")
    archive = out / "submission.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(package.iterdir()):
            zf.write(path, f"submission/{path.name}")
    return archive
