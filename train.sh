#!/usr/bin/env bash
# ./train.sh <preset> [--name=value ...]   e.g. ./train.sh smoke, ./train.sh default --num_workers=32
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -lt 1 ]; then
    echo "usage: ./train.sh <preset> [--name=value ...]   (presets: $(cd configs && ls -- *.yaml | sed 's/\.yaml$//' | tr '\n' ' '))" >&2
    exit 2
fi
# `-m cage_sf.cli`, not `-m cage_sf`: SF's spawned processes re-import the main module unless it is a `__main__`,
# so they import cage_sf (which silences gym's import banner) before Sample Factory imports gym
exec python -m cage_sf.cli train "$@"
