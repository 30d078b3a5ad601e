"""Public contracts of slurp: the ``RunJob`` message, run events and job definitions.

Other services depend on these models (and on the committed JSON Schemas in
``contracts/schemas``) to publish work. Add fields; never rename or retype them.
"""

from contracts.base import SCHEMA_VERSION, Contract
from contracts.datasources import Datasource
from contracts.errors import ContractError, JobFileError
from contracts.events import (
    Event,
    JobCancelled,
    JobFailed,
    JobRejected,
    JobStarted,
    JobSucceeded,
)
from contracts.jobfile import load_jobs, parse_jobs
from contracts.jobs import (
    CollectionSpec,
    CollectionType,
    Guards,
    JobDefinition,
    RetryPolicy,
    Schedule,
)
from contracts.messages import RunJob, scheduled_run_id

__all__ = [
    "SCHEMA_VERSION",
    "CollectionSpec",
    "CollectionType",
    "Contract",
    "ContractError",
    "Datasource",
    "Event",
    "Guards",
    "JobCancelled",
    "JobDefinition",
    "JobFailed",
    "JobFileError",
    "JobRejected",
    "JobStarted",
    "JobSucceeded",
    "RetryPolicy",
    "RunJob",
    "Schedule",
    "load_jobs",
    "parse_jobs",
    "scheduled_run_id",
]
