#!/usr/bin/env bash
# Install twinnn with both CPU backends into .venv, then run every check CI runs:
# ruff, mypy, import-linter (the import layering), the test suite on both backends, and the
# strict docs build.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints/cpu.txt pins the CPU wheels: an unpinned torch may pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet -c constraints/cpu.txt -e ".[cpu,dev,docs,plot]"

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== lint-imports"
.venv/bin/lint-imports
if [ -f mkdocs.yml ]; then
    echo "== mkdocs build --strict"
    NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
fi
echo "== pytest (torch and tensorflow)"
.venv/bin/python -m pytest "$@"
