# Sourced by scripts/demo.sh and scripts/test.sh: create the virtual environment if it is missing,
# install the pinned requirements and this plugin (editable), put the environment first on PATH.
#   MINDCV_HALONET_VENV  where the environment lives (default: <repo>/.venv)
#   PYTHON               interpreter used to create it (default: the first of python3.11,
#                        python3.12, python3.10, python3.9, python3 that mindspore 2.8.0 supports)
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MINDCV_HALONET_VENV:-$REPO/.venv}"

_supported_python() {  # mindspore 2.8.0 has wheels for CPython 3.9-3.12
    "$1" -c 'import sys; sys.exit(0 if (3, 9) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null
}

if [ ! -x "$VENV/bin/python" ]; then
    candidates="${PYTHON:-python3.11 python3.12 python3.10 python3.9 python3}"
    chosen=""
    for py in $candidates; do
        if command -v "$py" >/dev/null 2>&1 && _supported_python "$py"; then chosen="$py"; break; fi
    done
    if [ -z "$chosen" ]; then
        echo "setup_env.sh: no Python 3.9-3.12 found among: $candidates (mindspore 2.8.0 needs one);" \
             "set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
    echo "[setup] creating $VENV with $chosen"
    "$chosen" -m venv "$VENV"
fi
if ! _supported_python "$VENV/bin/python"; then
    echo "setup_env.sh: $VENV uses $("$VENV/bin/python" -V 2>&1); mindspore 2.8.0 needs Python 3.9-3.12." \
         "Remove it or set MINDCV_HALONET_VENV." >&2
    exit 1
fi

_quiet_pip() {  # pip's (and the build backend's) chatter goes to a log shown only on failure
    local log
    log="$(mktemp)"
    if ! "$VENV/bin/python" -m pip install --disable-pip-version-check "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        echo "setup_env.sh: pip install $* failed" >&2
        exit 1
    fi
    rm -f "$log"
}

echo "[setup] installing requirements/test.txt and the plugin (pip install -e .) into $VENV"
_quiet_pip -r "$REPO/requirements/test.txt"
_quiet_pip -e "$REPO"

export PATH="$VENV/bin:$PATH"   # msrun workers run plain `python`
export GLOG_v="${GLOG_v:-3}"    # MindSpore C++ log level: errors only
