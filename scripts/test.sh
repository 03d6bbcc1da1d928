#!/usr/bin/env bash
# The test command, from a fresh clone: set everything up, then run pytest over tests/.
# Arguments replace the default `tests` (e.g. bash scripts/test.sh tests/plugin -x).
set -euo pipefail
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup_env.sh"

# ---- optional reference stack (torch + timm) for reference/parity tests -----------------------
# Owned by the converter engineer: put its install step here, e.g.
#   if [ "${MINDCV_HALONET_WITH_REFERENCE:-0}" = 1 ]; then
#       python -m pip install -q -r "$REPO/requirements/reference.txt"
#   fi
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
