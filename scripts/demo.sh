#!/usr/bin/env bash
# The main job, from a fresh clone: set everything up, then train a HaloNet on a generated tiny
# data set through MindCV's factories, save a checkpoint, validate it, print accuracy and img/s.
# Extra arguments go to scripts/demo.py (e.g. --model halonet_50t --epochs 8).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"
cd "$REPO"
python scripts/demo.py "$@"
