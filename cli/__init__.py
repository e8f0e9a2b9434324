"""The `mentorship` command: run the system, the demo, and operate it."""
