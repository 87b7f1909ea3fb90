"""The process's one in-memory metric reader: OpenTelemetry lets a process set its meter provider only once, so every
test module that reads exported points shares this reader."""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()


def install_meter_provider() -> None:
    """Install the global meter provider reading into `reader`, unless this process already has it."""
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def metric_sum(name: str) -> int:
    """The sum of every data point of the counter or histogram count `name` exported so far (cumulative)."""
    data = reader.get_metrics_data()
    total = 0
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    total += sum(int(point.value) for point in metric.data.data_points)  # type: ignore[union-attr]
    return total
