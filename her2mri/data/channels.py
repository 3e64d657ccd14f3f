"""The three image channels built from the normalised phases: ``phases``, ``subtraction`` or ``kinetic``.

Input: the normalised stack ``(3, ..., Y, X)``, float32 in [0, 1] (pre ``p``, early ``e``, late ``l``), with
one
intensity map for the three phases (a joint normalisation: ``clip_global_*``, ``minmax_global``, or the cohort
scope of one of them), so that differences between phases are differences of signal. Output: the same shape,
float32 in [0, 1], ready for 8-bit quantisation.

* ``phases``: ``(p, e, l)`` unchanged (R/G/B = pre/early/late, the paper's fusion).
* ``subtraction``: ``(p, (e - p + 1) / 2, (l - e + 1) / 2)``. A difference lies in [-1, 1]; ``(d + 1) / 2``
  maps
  it to [0, 1] without clipping, so 0.5 means "no change", wash-in is above 0.5 and wash-out (late lower than
  early, the HER2-enriched pattern) is below 0.5.
* ``kinetic``: ``((e - p + 1) / 2, (l - e + 1) / 2, (r + 1) / 2)`` with the wash-out ratio
  ``r = clip((l - e) / max(e - p, eps), -1, 1)``: the late change relative to the early enhancement
  (``-1`` = all of the early enhancement washed out, ``0`` = plateau, ``+1`` = persistent rise as large as the
  wash-in). ``eps`` (``kinetic_eps``, default 0.05 of the intensity range) keeps non-enhancing tissue, where
  ``e - p`` is noise, near the plateau value instead of dividing by noise.

Why: per-phase (``clip_channel_*``) and per-patient maps rescale each phase on its own and shrink the
early-pre contrast of the tumour (about 13/255 on a synthetic case against 82-109 with a global map); the
difference channels put the enhancement itself into the image, at the full 8-bit range of a channel.
"""

from __future__ import annotations

import numpy as np

from her2mri.data.preprocess_config import CHANNELS, check_choice

__all__ = ["make_channels"]


def make_channels(stack: np.ndarray, channels: str = "phases", kinetic_eps: float = 0.05) -> np.ndarray:
    """Build the three image channels from a normalised (pre, early, late) stack.

    Args:
        stack: float array ``(3, ..., Y, X)``, phases on axis 0, values in [0, 1].
        channels: ``phases``, ``subtraction`` or ``kinetic`` (formulas in the module docstring).
        kinetic_eps: floor of ``e - p`` in the wash-out ratio, > 0.

    Returns:
        float32 array of the same shape, values in [0, 1].

    Raises:
        ValueError: unknown ``channels``, ``kinetic_eps`` <= 0, or a stack without 3 phases on axis 0.

    Example:
        >>> x = np.array([0.2, 0.6, 0.5], np.float32).reshape(3, 1, 1)
        >>> make_channels(x, "subtraction").ravel().round(3).tolist()
        [0.2, 0.7, 0.45]
    """
    check_choice("channels", channels, CHANNELS)
    if not float(kinetic_eps) > 0.0:
        raise ValueError(f"kinetic_eps={kinetic_eps!r} must be > 0.")
    x = np.asarray(stack, dtype=np.float32)
    if x.ndim < 3 or x.shape[0] != 3:
        raise ValueError(f"stack must have the 3 phases on axis 0, got shape {x.shape}")
    if channels == "phases":
        return x
    pre, early, late = x[0], x[1], x[2]
    wash_in = early - pre
    late_change = late - early
    out = np.empty_like(x)
    if channels == "subtraction":
        out[0] = pre
        out[1] = (wash_in + 1.0) * 0.5
        out[2] = (late_change + 1.0) * 0.5
    else:
        ratio = late_change / np.maximum(wash_in, np.float32(kinetic_eps))
        out[0] = (wash_in + 1.0) * 0.5
        out[1] = (late_change + 1.0) * 0.5
        out[2] = (np.clip(ratio, -1.0, 1.0) + 1.0) * 0.5
    return np.clip(out, 0.0, 1.0, out=out)
