#!/usr/bin/env bash
# The Python step of `make test`: the trip example's participants (examples/trip/) run on
# pika, installed once from PyPI into a virtual environment of their own, so that nothing is
# added to the system's Python. A machine that has it skips this. Prints nothing when ready.
set -euo pipefail

venv="${SAGAFLOW_PYENV:-$HOME/.cache/sagaflow/pyenv}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import pika' 2>/dev/null; then
  exit 0
fi
echo "python: making $venv with pika (once)" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'pika==1.3.2'
"$venv/bin/python" -c 'import pika' || { echo "python: pika is still missing" >&2; exit 1; }
