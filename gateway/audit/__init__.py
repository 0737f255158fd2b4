"""Audit: OpenTelemetry spans, the JSON-lines audit log and metrics (issue 5, items 7-9)."""

from gateway.audit.config import AuditConfig
from gateway.audit.metrics import CLIENT_TO_UPSTREAM, UPSTREAM_TO_CLIENT, AuditMetrics
from gateway.audit.pipeline import PROMETHEUS_CONTENT_TYPE, AuditPipeline
from gateway.audit.records import ConnectionRecord, DecisionRecord, decision_record

__all__ = [
    "CLIENT_TO_UPSTREAM",
    "PROMETHEUS_CONTENT_TYPE",
    "UPSTREAM_TO_CLIENT",
    "AuditConfig",
    "AuditMetrics",
    "AuditPipeline",
    "ConnectionRecord",
    "DecisionRecord",
    "decision_record",
]
