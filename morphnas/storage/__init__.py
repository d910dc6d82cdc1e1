"""Run directories: trials, models on disk, resume (see docs/architecture.md)."""
