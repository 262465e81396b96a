"""Presets (configs/<name>.yaml, Sample Factory argument names) + `--name=value` overrides -> SF config.

A preset may `extends:` another; later values win, and command-line overrides win over the preset.
Every key and value is checked against Sample Factory's own argument parser before anything runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from cage_sf.errors import UsageError
from cage_sf.params import COMBINATIONS, DOMAINS, add_cage_sf_args


def _config_dir() -> Path:
    """An installed package carries the presets as cage_sf/configs (pyproject.toml); a checkout keeps them at its
    root, configs/."""
    packaged = Path(__file__).resolve().parent / "configs"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "configs"


CONFIG_DIR = _config_dir()
RESERVED_KEYS = ("extends", "description")


def available_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(available_presets())}")
    return path


def load_preset(name: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name in _seen:
        raise UsageError(f"preset {name!r} extends itself ({' -> '.join(_seen + (name,))})")
    path = preset_path(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"preset {path} is not valid YAML: {exc}".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise UsageError(f"preset {path} must be a mapping of Sample Factory argument names to values")
    base = load_preset(data["extends"], _seen + (name,)) if data.get("extends") else {}
    return base | {k: v for k, v in data.items() if k not in RESERVED_KEYS}


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    overrides = {}
    for token in tokens:
        if not token.startswith("--") or "=" not in token:
            raise UsageError(f"override {token!r} must look like --name=value")
        key, value = token[2:].split("=", 1)
        overrides[key] = value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    """Sample Factory's full parser plus cage-sf's own options (`cage_sf.params`); `--device` also accepts `auto`."""
    from sample_factory.cfg.arguments import parse_sf_args  # imports torch: only when a config is built

    parser, _ = parse_sf_args(["--env=cc4"])
    add_cage_sf_args(parser)
    parser._option_string_actions["--device"].choices = ["auto", "gpu", "cpu"]
    return parser


def check_config(cfg: argparse.Namespace) -> None:
    """Refuse, with one line, a parsed config holding a value outside its domain or a combination that misbehaves."""
    for key, domain in DOMAINS.items():
        value = getattr(cfg, key)
        if value not in domain:
            raise UsageError(f"bad value for {key}: {value!r} (must be {domain})")
    for holds, why in COMBINATIONS:
        if not holds(cfg):
            raise UsageError(why.format(**vars(cfg)))


def _as_strings(action: argparse.Action, value: Any) -> list[str]:
    if action.nargs in ("*", "+"):
        items = value if isinstance(value, list) else str(value).replace(",", " ").split()
        return [str(v) for v in items]
    return [str(value)]


def _check_value(action: argparse.Action, key: str, strings: list[str]) -> None:
    for s in strings:
        try:
            converted = action.type(s) if action.type else s
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            expected = getattr(action.type, "__name__", "a valid value")
            raise UsageError(f"bad value for {key}: {s!r} (expected {expected})") from None
        if action.choices is not None and converted not in action.choices:
            raise UsageError(f"bad value for {key}: {s!r} (choose from {', '.join(map(str, action.choices))})")


def to_argv(values: dict[str, Any], parser: argparse.ArgumentParser, source: str) -> list[str]:
    argv = []
    for key, value in values.items():
        action = parser._option_string_actions.get(f"--{key}")
        if action is None:
            raise UsageError(f"unknown option {key!r} in {source}; `cage-sf options` lists the valid names")
        if value is None:
            continue
        strings = _as_strings(action, value)
        _check_value(action, key, strings)
        argv += [f"--{key}", *strings] if action.nargs in ("*", "+") else [f"--{key}={strings[0]}"]
    return argv


def preset_argv(preset: str, override_tokens: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """The Sample Factory command line a preset plus overrides stand for (validated)."""
    argv = ["--env=cc4", f"--experiment={Path(preset).stem}"]
    argv += to_argv(load_preset(preset), parser, f"preset {preset!r}")
    return argv + to_argv(parse_overrides(override_tokens), parser, "the command line")


def parse_config(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    from sample_factory.cfg.arguments import parse_full_cfg

    return parse_full_cfg(parser, argv)
