"""Selection of the three DCE phases (pre, early, late) from a patient's acquisitions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from her2mri.data.errors import DataError


class SelectPhases:
    """Stack the pre, early and late acquisitions of a patient into a (3, Z, Y, X) array.

    The indices come per patient from the metadata columns ``pre``, ``post_early``, ``post_late``
    (0-based acquisition indices, typically 0, 2, 5 or 6 for I-SPY2): never guess them from the file count.

    Args:
        indices: default (pre, early, late) indices; a call may pass its own. Negative indices count from
            the end (-1 = last acquisition).

    Example:
        >>> acq = [np.full((2, 4, 4), k, np.uint16) for k in range(7)]
        >>> SelectPhases((0, 2, 5))(acq)[:, 0, 0, 0].tolist()
        [0, 2, 5]
    """

    def __init__(self, indices: Sequence[int] | None = None) -> None:
        self.indices = None if indices is None else _check_indices(indices)

    def __call__(
        self,
        acquisitions: Sequence[np.ndarray] | np.ndarray,
        indices: Sequence[int] | None = None,
        case_id: str = "",
    ) -> np.ndarray:
        """Select the three phases.

        Args:
            acquisitions: list of 3-D arrays (one per acquisition) or a 4-D (T, Z, Y, X) array.
            indices: (pre, early, late); defaults to the constructor's.
            case_id: named in errors.

        Raises:
            DataError: an index is beyond the acquisitions, or the selected volumes differ in shape.
        """
        idx = self.indices if indices is None else _check_indices(indices)
        if idx is None:
            raise ValueError("indices=None: pass (pre, early, late) to the constructor or the call")
        n = len(acquisitions)
        name = case_id or "case"
        chosen = []
        for role, i in zip(("pre", "early", "late"), idx, strict=True):
            if not -n <= i < n:
                raise DataError(f"{name}: {role} phase index {i} is beyond the {n} acquisitions (0..{n - 1})")
            chosen.append(np.asarray(acquisitions[i]))
        shapes = {a.shape for a in chosen}
        if len(shapes) != 1 or chosen[0].ndim != 3:
            raise DataError(
                f"{name}: selected phases must be 3-D volumes of one shape, got {[a.shape for a in chosen]}"
            )
        return np.stack(chosen)


def _check_indices(indices: Sequence[int]) -> tuple[int, int, int]:
    vals = tuple(indices)
    if len(vals) != 3:
        raise ValueError(f"indices={indices!r} must be three integers (pre, early, late).")
    out = []
    for v in vals:
        if isinstance(v, bool) or not float(v).is_integer():
            raise ValueError(f"indices={indices!r} must be three integers (pre, early, late); got {v!r}.")
        out.append(int(v))
    return out[0], out[1], out[2]
