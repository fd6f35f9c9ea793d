#!/usr/bin/env bash
# The built wheel as a user gets it: a fresh virtual environment with torch from the pinned
# requirement, the wheel installed with its dependencies, nothing of the source tree on the path.
# Then: import, parity with nn.LSTM on a small case, `python -m fusedlstm`, the wheel's contents.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
wheels=("$root"/dist/fusedlstm-*.whl)
[[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || { echo "expected one wheel in dist/: ${wheels[*]}"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${PYTHON:-python3.11}" -m venv "$work/venv"
pip=("$work/venv/bin/pip" install --quiet --disable-pip-version-check)
"${pip[@]}" "$(grep '^torch==' "$root/requirements-dev.txt")"
"${pip[@]}" "${wheels[0]}"
cd "$work"
"$work/venv/bin/python" - "${wheels[0]}" < "$root/.ci/wheel_smoke.py"
"$work/venv/bin/python" -m fusedlstm
