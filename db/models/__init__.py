"""The ORM models; importing this package registers every table on ``Base.metadata``."""

from db.models.datasets import Dataset, Layout, Task
from db.models.jobs import FINISHED, Job, JobStateError, JobStatus
from db.models.results import Checkpoint, Metric, Weights, WeightsKind
from db.models.tenants import ApiToken, Tenant
from db.models.uploads import Upload, UploadStatus

__all__ = [
    "FINISHED",
    "ApiToken",
    "Checkpoint",
    "Dataset",
    "Job",
    "JobStateError",
    "JobStatus",
    "Layout",
    "Metric",
    "Task",
    "Tenant",
    "Upload",
    "UploadStatus",
    "Weights",
    "WeightsKind",
]
