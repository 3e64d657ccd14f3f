"""Selection of the three DCE phases (pre, early, late) from a patient's acquisitions.

:class:`PhaseRule` chooses the acquisition indices from acquisition times (the rule of ``her2mri-import``,
see ``docs/dicom.md``). Cohort readers select the phase files by index (:mod:`her2mri.data.readers`), so the
preprocessing reads the three selected files only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from her2mri.data.errors import DataError


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
