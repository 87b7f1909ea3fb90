"""Usage: rollups derived from each org log by their follower, and the usage queries and billing ratings over them."""

from ledger.usage.follower import RollupFollower
from ledger.usage.query import (
    GROUP_DIMENSIONS,
    MAX_WINDOW_MICROS,
    STORAGE_UNIT,
    UsageReport,
    UsageRow,
    unit_name,
    usage_rows,
)
from ledger.usage.view import UsageView

__all__ = [
    "GROUP_DIMENSIONS",
    "MAX_WINDOW_MICROS",
    "STORAGE_UNIT",
    "RollupFollower",
    "UsageReport",
    "UsageRow",
    "UsageView",
    "unit_name",
    "usage_rows",
]
