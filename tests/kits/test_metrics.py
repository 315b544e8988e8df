"""Every metric name the jobs accept (MetricKind) through the metric kit, and the averages below."""

from __future__ import annotations

from trainyard.core.metrics import Metric, MetricKind
from trainyard.testing.metrics import MetricKit


class TestMetricKinds(MetricKit):
    union = MetricKind
    variants = (Metric(KIND="f1", average="weighted"), Metric(KIND="recall", average="micro"))
