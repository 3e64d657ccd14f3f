"""Clinical statistics for binary HER2 models: pure functions on numpy arrays returning small dataclasses.

Every result has ``.to_dict()`` (JSON-serialisable). Labels are 0/1 with 1 = positive; higher scores mean
more likely positive; a patient is called positive when ``score >= threshold``. Degenerate inputs (one class
only, constant scores where a variance is needed, NaN/inf, length mismatch, labels other than 0/1) raise
``ValueError`` naming the argument and the value. See docs/statistics.md.
"""

from her2mri.stats.auc import (
    AUCResult,
    DeLongTestResult,
    UnpairedDeLongResult,
    auc_ci_delong,
    delong_covariance,
    delong_pvalue_matrix,
    delong_test,
    delong_test_unpaired,
    roc_auc,
)
from her2mri.stats.bootstrap import auc_ci_bootstrap, bootstrap_ci, stratified_bootstrap_indices
from her2mri.stats.calibration import (
    DEFAULT_EPS,
    CalibrationCurve,
    CalibrationResult,
    brier_score,
    calibration_curve,
    calibration_stats,
    expected_calibration_error,
)
from her2mri.stats.conformal import ConformalCalibration, conformal_coverage, fit_conformal
from her2mri.stats.dca import decision_curve, net_benefit, plot_decision_curve
from her2mri.stats.hosmer_lemeshow import HosmerLemeshowResult, hosmer_lemeshow
from her2mri.stats.nomogram import Nomogram, NomogramPredictor, axis_values, build_nomogram, plot_nomogram
from her2mri.stats.proportions import ProportionCI, wilson_ci
from her2mri.stats.recalibration import RECALIBRATION_METHODS, Recalibrator, fit_recalibrator
from her2mri.stats.thresholds import (
    ThresholdMetrics,
    called_positive,
    metrics_at_threshold,
    metrics_at_youden,
    youden_threshold,
)

__all__ = [
    "DEFAULT_EPS",
    "RECALIBRATION_METHODS",
    "ConformalCalibration",
    "Recalibrator",
    "UnpairedDeLongResult",
    "conformal_coverage",
    "delong_test_unpaired",
    "expected_calibration_error",
    "fit_conformal",
    "fit_recalibrator",
    "AUCResult",
    "CalibrationCurve",
    "CalibrationResult",
    "DeLongTestResult",
    "HosmerLemeshowResult",
    "Nomogram",
    "NomogramPredictor",
    "ProportionCI",
    "ThresholdMetrics",
    "auc_ci_bootstrap",
    "auc_ci_delong",
    "axis_values",
    "bootstrap_ci",
    "brier_score",
    "build_nomogram",
    "calibration_curve",
    "called_positive",
    "calibration_stats",
    "decision_curve",
    "delong_covariance",
    "delong_pvalue_matrix",
    "delong_test",
    "hosmer_lemeshow",
    "metrics_at_threshold",
    "metrics_at_youden",
    "net_benefit",
    "plot_decision_curve",
    "plot_nomogram",
    "roc_auc",
    "stratified_bootstrap_indices",
    "wilson_ci",
    "youden_threshold",
]
