#!/usr/bin/env bash
# One command: set up, then run the whole test suite (unit, integration, end-to-end).
# Tests start their own nats-server; PostgreSQL comes from MENTORSHIP_TEST_DATABASE_URL,
# else testcontainers (Docker), else a throwaway cluster made with initdb/pg_ctl.
# Extra arguments go to pytest (e.g. -k dlq, tests/unit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
