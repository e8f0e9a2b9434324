#!/usr/bin/env bash
# One command: set up (the project with its test tools, .[test]), then run the whole test suite
# (unit, integration, end-to-end).
# NATS and PostgreSQL come from MENTORSHIP_TEST_NATS_URL / MENTORSHIP_TEST_DATABASE_URL, else
# testcontainers (when a Docker engine answers), else a nats-server from the wheel on a free
# port and a throwaway PostgreSQL cluster made with initdb/pg_ctl.
# Tests run in MENTORSHIP_TEST_WORKERS parallel pytest-xdist workers (default 3: most tests wait
# on servers, not on the CPU; 0 runs them in this process). Every test has its own nats-server,
# databases and folders, so workers share nothing; with MENTORSHIP_TEST_NATS_URL they would
# share that server's one stream, so the default is then 0.
# Extra arguments go to pytest (e.g. -k dlq, tests/unit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m services.pairing.warmup  # numba compiles once; then it only loads
if [ -n "${MENTORSHIP_TEST_NATS_URL:-}" ]; then default_workers=0; else default_workers=3; fi
workers="${MENTORSHIP_TEST_WORKERS:-$default_workers}"
if [ "$workers" = "0" ]; then
  exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist worksteal "$@"
