"""What became of a delivery of a task: the value the leader's and a rank's tasks return."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    HANDED_BACK = "handed back"  # by a worker shutting down, to be resumed at once
    SUPERSEDED = "superseded"  # this attempt lost the lease: another one leads the job
    DUPLICATE = "duplicate"  # a live leader holds the job: this delivery is dropped
    MISSING = "missing"  # no such job
    NOT_NEEDED = "not needed"  # a rank its leader runs without
