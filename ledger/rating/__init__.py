"""The rating engine: usage events to sessions, billed units, storage charges and anomalies (pure, exact)."""

from ledger.rating.attribution import Attribution, RequestAttribution, RequestSpan, attribute_serving
from ledger.rating.sessions import LoggedEvent, Session, rate_session
from ledger.rating.storage import StorageCharge, rate_storage_sample
from ledger.rating.units import UnitRun, WindowUsage, billed_unit_count, build_runs, money_between
from ledger.rating.windows import BucketSize, bucket_usage, usage_in_window
from ledger.rating.workloads import (
    TYPE_ORDER,
    Anomaly,
    OrgRating,
    WorkloadRating,
    ZeroLine,
    rate_org,
    rate_workload,
    unique_events,
)

__all__ = [
    "TYPE_ORDER",
    "Anomaly",
    "Attribution",
    "BucketSize",
    "LoggedEvent",
    "OrgRating",
    "RequestAttribution",
    "RequestSpan",
    "Session",
    "StorageCharge",
    "UnitRun",
    "WindowUsage",
    "WorkloadRating",
    "ZeroLine",
    "attribute_serving",
    "billed_unit_count",
    "bucket_usage",
    "build_runs",
    "money_between",
    "rate_org",
    "rate_session",
    "rate_storage_sample",
    "rate_workload",
    "unique_events",
    "usage_in_window",
]
