"""The evaluation report: ``her2mri-report`` (HTML + PNGs + JSON)."""

from her2mri.report.build import ReportPaths, build_report
from her2mri.report.collect import ModelSource, SplitPredictions, load_sources, read_predictions_csv
from her2mri.report.compute import compute_report

__all__ = [
    "ModelSource",
    "ReportPaths",
    "SplitPredictions",
    "build_report",
    "compute_report",
    "load_sources",
    "read_predictions_csv",
]
