#!/usr/bin/env bash
# One command: set up (the project with its test tools, .[test]), then run the whole test suite
# (unit, integration, end-to-end).
# NATS and PostgreSQL come from MENTORSHIP_TEST_NATS_URL / MENTORSHIP_TEST_DATABASE_URL, else
# testcontainers (when a Docker engine answers), else a nats-server from the wheel on a free
# port and a throwaway PostgreSQL cluster made with initdb/pg_ctl.
# Extra arguments go to pytest (e.g. -k dlq, tests/unit).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
