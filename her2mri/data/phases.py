"""Selection of the three DCE phases (pre, early, late) from a patient's acquisitions.

:class:`SelectPhases` stacks given indices; :class:`PhaseRule` chooses the indices from acquisition times
(the rule of ``her2mri-import``, see ``docs/dicom.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class PhaseRule:
    """How the pre/early/late acquisitions are chosen (see the module docstring).

    Args:
        indices: explicit (pre, early, late) acquisition indices in time order (negative counts from the end);
            overrides the time rule.
        early_s: seconds after the start of the first post-contrast acquisition for the early phase.
        late_s: seconds after the same start for the late phase; None = the last acquisition.
    """

    indices: tuple[int, int, int] | None = None
    early_s: float = 120.0
    late_s: float | None = None

    def choose(self, times_s: Sequence[float | None], case: str = "case") -> tuple[int, int, int]:
        """(pre, early, late) indices for acquisitions with these start times (seconds after the first)."""
        n = len(times_s)
        if self.indices is not None:
            out = []
            for role, i in zip(("pre", "early", "late"), self.indices, strict=True):
                if not -n <= i < n:
                    raise DataError(
                        f"{case}: {role} phase index {i} is beyond the {n} acquisitions (0..{n - 1})"
                    )
                out.append(i % n)
            return out[0], out[1], out[2]
        if n < 3:
            raise DataError(f"{case}: {n} DCE acquisition(s); need at least 3 for pre, early and late")
        if any(t is None for t in times_s):
            return 0, 1, n - 1
        post = np.asarray(times_s[1:], dtype=np.float64) - float(times_s[1])  # type: ignore[arg-type]
        late = n - 1 if self.late_s is None else 1 + int(np.argmin(np.abs(post - self.late_s)))
        last_early = max(1, late - 1)  # early comes before late whenever there is room
        early = 1 + int(np.argmin(np.abs(post[:last_early] - self.early_s)))
        return 0, early, late


def parse_phases(phases: PhaseRule | Sequence[int] | str | None) -> PhaseRule:
    """A :class:`PhaseRule` from None (default rule), a rule, three indices, or a string.

    Strings: ``"0,2,5"`` (indices) or ``"90s"`` / ``"90s,420s"`` (early / late seconds after the first
    post-contrast acquisition).

    Raises:
        ValueError: naming ``phases`` and the value.
    """
    if phases is None:
        return PhaseRule()
    if isinstance(phases, PhaseRule):
        return phases
    if isinstance(phases, str):
        parts = [p.strip() for p in phases.split(",") if p.strip()]
        try:
            if parts and all(p.lower().endswith("s") for p in parts) and len(parts) <= 2:
                secs = [float(p[:-1]) for p in parts]
                if not all(math.isfinite(v) and v >= 0 for v in secs):
                    raise ValueError
                return PhaseRule(early_s=secs[0], late_s=secs[1] if len(parts) == 2 else None)
            return parse_phases([int(p) for p in parts])
        except ValueError:
            raise ValueError(
                f"phases={phases!r} must be three indices like '0,2,5' or seconds like '90s' or '90s,420s'"
            ) from None
    vals = list(phases)
    if len(vals) != 3 or any(isinstance(v, bool) or not float(v).is_integer() for v in vals):
        raise ValueError(f"phases={phases!r} must be three integer indices (pre, early, late)")
    return PhaseRule(indices=(int(vals[0]), int(vals[1]), int(vals[2])))
