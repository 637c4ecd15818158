#!/usr/bin/env bash
# Gate a CI job on converted accuracy: fail the build when the spiking
# network loses more than MAX_DROP of the ANN's accuracy.
#
#   MODEL=path/to/qcfs_model.pt DATA=path/to/val.npz MAX_DROP=0.01 TIMESTEPS=32 \
#       bash examples/ci/accuracy_gate.sh
#
# nmtc check-accuracy exits 0 when the gate holds, 1 when it fails and 2 on bad
# input, so the job fails either way; the JSON is kept as a build artifact.
set -euo pipefail
MODEL=${MODEL:-nmtoolchain/data/digits_qcfs_cnn.pt}
MAX_DROP=${MAX_DROP:-0.01}
TIMESTEPS=${TIMESTEPS:-32}
OUT=${OUT:-accuracy.json}
# nmtc from PATH, else the repository's .venv (make env), else this checkout's
# package run by python3 (no activated environment needed)
if [ -z "${NMTC:-}" ]; then
    HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    if command -v nmtc >/dev/null 2>&1; then NMTC=(nmtc)
    elif [ -x "$HERE/.venv/bin/nmtc" ]; then NMTC=("$HERE/.venv/bin/nmtc")
    elif [ -x "$HERE/.venv/bin/python" ]; then NMTC=("$HERE/.venv/bin/python" -m nmtoolchain.cli)
    else NMTC=(env "PYTHONPATH=$HERE${PYTHONPATH:+:$PYTHONPATH}" python3 -m nmtoolchain.cli)
    fi
else
    NMTC=("$NMTC")
fi
if [ -n "${DATA:-}" ]; then SOURCE=(--data "$DATA"); else SOURCE=(--dataset digits); fi
"${NMTC[@]}" check-accuracy "$MODEL" "${SOURCE[@]}" --timesteps "$TIMESTEPS" \
    --max-drop "$MAX_DROP" --json > "$OUT"
echo "accuracy gate passed (max drop $MAX_DROP); details in $OUT"
