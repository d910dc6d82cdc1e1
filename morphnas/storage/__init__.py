"""Run directories: trials in SQLite, models on disk (architecture + safetensors + checksum), resume."""

from morphnas.storage.rundir import RunDir, RunDirError, TrialRecord, environment_versions

__all__ = ["RunDir", "RunDirError", "TrialRecord", "environment_versions"]
