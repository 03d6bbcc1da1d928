#!/usr/bin/env bash
# The MindSpore version matrix: tests/layers, tests/plugin, tests/weights and the convert / check command
# tests under the oldest and the
# newest mindspore on PyPI for this Python (2.7.0 and 2.10.0 for CPython 3.11), each in its own
# environment; the 2.7.0 environment also runs tests/hub with the huggingface_hub 0.x line
# (requirements/matrix-<version>.txt, installed after requirements/test.txt when it exists).
# The full suite runs on the pinned 2.8.0 (scripts/test.sh, which calls this script).
#
#   MINDCV_HALONET_VENV          base environment (default <repo>/.venv); the matrix environments are
#                                <base>-ms<version>, e.g. .venv-ms2.7.0, .venv-ms2.10.0
#   MINDCV_HALONET_MS_VERSIONS   versions to run (default "2.7.0 2.10.0")
#   MINDCV_HALONET_TIMM_PYTHON   interpreter that runs timm for tests/weights/test_timm_numerical.py
#                                (default: the base environment's python, where test.sh installs the
#                                reference stack; timm runs in that separate interpreter, so the
#                                matrix environments do not need torch). Required: without one that
#                                imports torch and timm the matrix fails before any setup, unless
#                                MINDCV_HALONET_WITH_REFERENCE=0 opts out (the last line then says so).
#
# What is deselected, explicitly (printed before each run). Both need torch *in-process*, and the
# matrix environments do not get the 5.5 GB reference stack; both run in the 2.8.0 suite:
#   * tests/commands/test_convert.py::test_pth_input_with_torch -- writes a .pth file with torch (the .pth
#     reader is plain torch code, no MindSpore);
#   * tests/layers/test_halo_attention_property.py -- its reference gradient is float64 torch
#     autograd (the layer's other reference tests, incl. gradients against timm fixtures, do run).
# MindOCR (tests/downstream): mindocr 0.5.0 imports mindspore.parallel._transformer, which only 2.7.0 still
# has; in the 2.7.0 environment requirements/mindocr.txt is installed --no-deps and tests/downstream runs too.
# Exit status: non-zero if any environment could not be set up or any run failed.
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${MINDCV_HALONET_VENV:-$REPO/.venv}"
VERSIONS="${MINDCV_HALONET_MS_VERSIONS:-2.7.0 2.10.0}"
SUITES=(tests/layers tests/plugin tests/weights tests/commands/test_convert.py tests/commands/test_check.py)
declare -A EXTRA_SUITES=([2.7.0]="tests/hub")  # with huggingface_hub 0.36.2 (requirements/matrix-2.7.0.txt)
DESELECT=(tests/commands/test_convert.py::test_pth_input_with_torch tests/layers/test_halo_attention_property.py)
DESELECT_WHY="needs torch in-process; the matrix environments have no torch (runs in the 2.8.0 suite)"
MINDOCR_MS="2.7.0"

if [ -z "${MINDCV_HALONET_TIMM_PYTHON:-}" ] && [ -x "$BASE/bin/python" ] \
        && "$BASE/bin/python" -c "import torch, timm" >/dev/null 2>&1; then
    export MINDCV_HALONET_TIMM_PYTHON="$BASE/bin/python"
fi
if [ "${MINDCV_HALONET_WITH_REFERENCE:-1}" = 0 ]; then
    reference_note="[matrix] REFERENCE SKIPPED (MINDCV_HALONET_WITH_REFERENCE=0): the timm parity tests did not run"
else
    if [ -z "${MINDCV_HALONET_TIMM_PYTHON:-}" ]; then
        echo "test_versions.sh: FAILED: no interpreter imports torch and timm ($BASE/bin/python cannot and" \
             "MINDCV_HALONET_TIMM_PYTHON is not set); install requirements/reference.txt there or set" \
             "MINDCV_HALONET_WITH_REFERENCE=0 to skip the timm parity tests explicitly" >&2
        exit 1
    fi
    if ! "$MINDCV_HALONET_TIMM_PYTHON" -c "import torch, timm" >/dev/null 2>&1; then
        echo "test_versions.sh: FAILED: MINDCV_HALONET_TIMM_PYTHON=$MINDCV_HALONET_TIMM_PYTHON cannot" \
             "'import torch, timm'" >&2
        exit 1
    fi
    export MINDCV_HALONET_WITH_REFERENCE=1
    reference_note=""
fi
export GLOG_v="${GLOG_v:-3}"

_setup() {  # _setup VERSION VENV: create VENV with the pinned requirements but mindspore==VERSION
    local version="$1" venv="$2" log reqs py
    log="$(mktemp)"
    reqs="$(mktemp --suffix=.txt)"
    sed "s/^mindspore==.*/mindspore==$version/" "$REPO/requirements/test.txt" >"$reqs"
    grep -q "^mindspore==$version\$" "$reqs" || { echo "test_versions.sh: no mindspore pin in requirements/test.txt" >&2; return 1; }
    if [ ! -x "$venv/bin/python" ]; then
        py="${PYTHON:-}"
        if [ -z "$py" ]; then  # the interpreter the base environment was made from
            py="$("$BASE/bin/python" -c 'import sys; print(sys._base_executable)' 2>/dev/null || command -v python3.11)"
        fi
        echo "[matrix] creating $venv with $py"
        "$py" -m venv "$venv" || return 1
    fi
    echo "[matrix] installing requirements/test.txt with mindspore==$version and the plugin into $venv"
    local extra=()
    if [ -f "$REPO/requirements/matrix-$version.txt" ]; then extra=(-r "$REPO/requirements/matrix-$version.txt"); fi
    if ! { "$venv/bin/python" -m pip install --disable-pip-version-check -r "$reqs" \
            && { [ "${#extra[@]}" -eq 0 ] || "$venv/bin/python" -m pip install --disable-pip-version-check "${extra[@]}"; } \
            && "$venv/bin/python" -m pip install --disable-pip-version-check -e "$REPO"; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log" "$reqs"
        return 1
    fi
    rm -f "$log" "$reqs"
    local got
    got="$("$venv/bin/python" -c 'import mindspore; print(mindspore.__version__)' 2>/dev/null)"
    if [ "$got" != "$version" ]; then
        echo "test_versions.sh: $venv has mindspore ${got:-(not importable)}, expected $version" >&2
        return 1
    fi
}

cd "$REPO"
failed=()
for version in $VERSIONS; do
    venv="$BASE-ms$version"
    start=$SECONDS
    if ! _setup "$version" "$venv"; then
        echo "[matrix] mindspore $version: environment setup FAILED" >&2
        failed+=("$version (setup)")
        continue
    fi
    suites=("${SUITES[@]}")
    if [ "$version" = "$MINDOCR_MS" ]; then
        echo "[matrix] mindspore $version: installing requirements/mindocr.txt (--no-deps) for tests/downstream"
        log="$(mktemp)"
        if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-deps \
                -r "$REPO/requirements/mindocr.txt" >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            failed+=("$version (mindocr setup)")
            continue
        fi
        rm -f "$log"
        suites+=(tests/downstream)
    fi
    setup_s=$((SECONDS - start))
    args=()
    for d in "${DESELECT[@]}"; do
        case "$d" in
            *::*) args+=(--deselect "$d") ;;  # one test
            *) args+=(--ignore "$d") ;;       # a whole file (not even collected)
        esac
        echo "[matrix] mindspore $version: deselected $d -- $DESELECT_WHY"
    done
    if [ -n "${EXTRA_SUITES[$version]:-}" ]; then suites+=(${EXTRA_SUITES[$version]}); fi
    echo "[matrix] mindspore $version: pytest ${suites[*]} (timm reference interpreter: ${MINDCV_HALONET_TIMM_PYTHON:-none};" \
         "huggingface_hub $("$venv/bin/python" -c 'import huggingface_hub; print(huggingface_hub.__version__)' 2>/dev/null))"
    start=$SECONDS
    PATH="$venv/bin:$PATH" "$venv/bin/python" -m pytest -q -p no:cacheprovider -rfEs --durations=10 "${args[@]}" "${suites[@]}"
    rc=$?
    echo "[matrix] mindspore $version: pytest exit $rc, setup ${setup_s} s, tests $((SECONDS - start)) s"
    if [ "$rc" -ne 0 ]; then failed+=("$version (pytest exit $rc)"); fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "[matrix] FAILED: mindspore ${failed[*]}" >&2
    [ -z "$reference_note" ] || echo "$reference_note"
    exit 1
fi
echo "[matrix] passed on mindspore $VERSIONS"
[ -z "$reference_note" ] || echo "$reference_note"
