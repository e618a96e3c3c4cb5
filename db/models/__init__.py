"""The ORM models; importing this package registers every table on ``Base.metadata``."""

from db.models.datasets import Dataset, Task
from db.models.jobs import FINISHED, Job, JobStateError, JobStatus
from db.models.results import Checkpoint, Metric, Weights, WeightsKind
from db.models.tenants import ApiToken, Tenant

__all__ = [
    "FINISHED",
    "ApiToken",
    "Checkpoint",
    "Dataset",
    "Job",
    "JobStateError",
    "JobStatus",
    "Metric",
    "Task",
    "Tenant",
    "Weights",
    "WeightsKind",
]
