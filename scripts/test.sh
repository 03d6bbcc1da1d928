#!/usr/bin/env bash
# The test command, from a fresh clone: set everything up, then run pytest over tests/.
# Arguments replace the default `tests` (e.g. bash scripts/test.sh tests/plugin -x).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"

# ---- reference stack (torch + timm) for the parity tests against real timm ----------------------
# On by default (about 1-2 minutes, ~5.5 GB); MINDCV_HALONET_WITH_REFERENCE=0 skips it, and the
# parity tests then report themselves as skipped with the reason.
if [ "${MINDCV_HALONET_WITH_REFERENCE:-1}" != 0 ]; then
    echo "[setup] installing requirements/reference.txt (torch, torchvision, timm) into $VENV"
    if ! python -m pip install -q --disable-pip-version-check -r "$REPO/requirements/reference.txt"; then
        echo "test.sh: WARNING: could not install requirements/reference.txt; the timm parity tests will be skipped" >&2
    fi
fi
# -----------------------------------------------------------------------------------------------

cd "$REPO"
if [ "$#" -eq 0 ]; then set -- tests; fi
set +e
python -m pytest -q -p no:cacheprovider -rfEs "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests; treating that as a failure" >&2
    exit 1
fi
exit "$rc"
