"""Evaluation: metrics, plots and a self-contained HTML report."""

from graft.evaluation.metrics import compute_metrics
from graft.evaluation.report import EvalReport, write_report

__all__ = ["EvalReport", "compute_metrics", "write_report"]
