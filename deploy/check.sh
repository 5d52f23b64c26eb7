#!/bin/sh
# The whole test suite: pytest, then lint and type checks. Runs every step and fails if any did.
set -u
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"
status=0
"$BIN/pytest" "$@" || status=1
"$BIN/ruff" check . || status=1
"$BIN/ruff" format --check . || status=1
"$BIN/mypy" || status=1
exit $status
