#!/usr/bin/env bash
# One command: set up (the project without its test tools), then run the demo on embedded
# defaults (nats-server from the wheel, SQLite, local SMTP catcher). Extra arguments go to
# `mentorship demo` (e.g. --keep-running).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --runtime
.venv/bin/python -m services.pairing.warmup  # numba compiles once; then it only loads
exec .venv/bin/mentorship demo "$@"
