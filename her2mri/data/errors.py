"""Errors raised by the data layer of her2mri."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


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


def apply_transform(transform: Callable[[Any], Any], data: Any) -> Any:
    """Call a MONAI transform and raise the error raised inside it as it is.

    MONAI wraps any error of a transform in ``RuntimeError("applying transform ...")``; her2mri's
    :class:`DataError` (naming the file or case) and ``ValueError`` (naming the option) are raised instead.
    """
    try:
        return transform(data)
    except RuntimeError as exc:
        err: BaseException = exc
        while (
            isinstance(err, RuntimeError)
            and str(err).startswith("applying transform")
            and err.__cause__ is not None
        ):
            err = err.__cause__
        if err is exc:
            raise
        raise err.with_traceback(err.__traceback__) from None
