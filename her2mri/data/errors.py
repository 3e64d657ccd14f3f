"""Errors raised by the data layer of her2mri."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data (not a bad argument).

    The message always names the file, or the case id / pid and CSV, and the problem, e.g.
    ``"/x/p1_spy2_vis1_mask.nii.gz: mask has shape (80, 256, 256) but phase image has (82, 256, 256)"``.
    It subclasses ``ValueError`` so callers that catch ``ValueError`` also catch it.
    """


class DataWarning(UserWarning):
    """Degenerate but usable data (zero intensity range, empty statistics mask, ...).

    The message names the case and the problem; the affected output is set to zeros, never NaN.
    """
