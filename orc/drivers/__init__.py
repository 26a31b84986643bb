"""Drivers run a task's workload: `process` for local processes, `docker` for containers."""
