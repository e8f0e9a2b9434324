#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it, only when pyproject.toml changed
# since the last successful install of the same extras (or the venv is new).
#   bash scripts/setup.sh             the project with its test tools (.[test]): tests, CI
#   bash scripts/setup.sh --runtime   the project alone (-e .): what `mentorship demo` needs
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
case "${1:-}" in
  "") extras=test; spec=".[test]" ;;
  --runtime) extras=runtime; spec="." ;;
  *) echo "usage: bash scripts/setup.sh [--runtime]" >&2; exit 2 ;;
esac

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "" 2>/dev/null; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  rm -rf .venv
  "$PYTHON" -m venv .venv
fi

# what was installed: pyproject.toml's content and the interpreter it went into
fingerprint="$( { cat pyproject.toml; .venv/bin/python --version; } | sha256sum | cut -d' ' -f1)"
marker=".venv/.installed-$extras"
up_to_date() { [ -f "$1" ] && [ "$(cat "$1")" = "$fingerprint" ]; }
# the test install contains the runtime one
if up_to_date "$marker" || { [ "$extras" = runtime ] && up_to_date .venv/.installed-test; }; then
  echo "[setup] .venv is up to date ($spec, pyproject.toml unchanged since its install); skipping pip"
  exit 0
fi

echo "[setup] installing mentorship ($spec) and its dependencies into .venv (first run takes a minute)"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e "$spec"
echo "$fingerprint" > "$marker"
echo "[setup] done"
