"""HER2 labels from immunohistochemistry (IHC) and in-situ hybridisation (ISH/FISH), ASCO/CAP rules.

- Binary HER2 (seed 001): IHC 0 / 1+ -> negative (0); IHC 3+ -> positive (1); IHC 2+ -> the ISH result
  (amplified -> 1, not amplified -> 0, missing -> unknown).
- Three categories (seed 003): ``HER2-0`` (IHC 0), ``HER2-low`` (IHC 1+, or 2+ with negative ISH),
  ``HER2-positive`` (IHC 3+, or 2+ with positive ISH).
- HER2-low vs HER2-0 (seed 003): 1 for HER2-low, 0 for HER2-0, unknown (None) for HER2-positive
  (those patients are outside that question and must be excluded, not counted as negatives).
- HER2 status change between two time points (seed 000, before and after neoadjuvant chemotherapy):
  1 when the category differs, on the three-category or the binary scheme.

Unknown inputs give ``None`` (never a silent 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

HER2_CATEGORIES = ("HER2-0", "HER2-low", "HER2-positive")

_IHC_TEXT = {"0": 0, "1": 1, "1+": 1, "2": 2, "2+": 2, "3": 3, "3+": 3, "+": 1, "++": 2, "+++": 3}
_ISH_POS = {"1", "pos", "positive", "amplified", "amp", "+", "true", "yes"}
_ISH_NEG = {"0", "neg", "negative", "not amplified", "non-amplified", "nonamplified", "-", "false", "no"}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def parse_ihc(value: Any) -> int | None:
    """IHC score as 0, 1, 2 or 3 (None when missing). Accepts 0/1/2/3, "1+", "2+", "3+", "+++".

    Raises:
        ValueError: naming the value when it is not an IHC score.
    """
    if _missing(value):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if float(value) in (0.0, 1.0, 2.0, 3.0):
            return int(value)
        raise ValueError(f"ihc={value!r}: an IHC score must be 0, 1+, 2+ or 3+")
    text = str(value).strip().lower().replace(" ", "")
    if text in _IHC_TEXT:
        return _IHC_TEXT[text]
    try:
        return parse_ihc(float(text))
    except ValueError:
        raise ValueError(f"ihc={value!r}: an IHC score must be 0, 1+, 2+ or 3+") from None


def parse_ish(value: Any) -> int | None:
    """ISH / FISH result as 1 (amplified), 0 (not amplified) or None (missing / not done)."""
    if _missing(value):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and float(value) in (0.0, 1.0):
        return int(value)
    text = str(value).strip().lower()
    if text in _ISH_POS:
        return 1
    if text in _ISH_NEG:
        return 0
    raise ValueError(f"ish={value!r}: expected positive/amplified/1 or negative/not amplified/0")


def her2_category(ihc: Any, ish: Any = None) -> str | None:
    """``"HER2-0"``, ``"HER2-low"`` or ``"HER2-positive"`` (None when IHC is 2+ without ISH, or missing)."""
    score = parse_ihc(ihc)
    amp = parse_ish(ish)
    if score is None:
        return None
    if score == 0:
        return "HER2-0"
    if score == 1:
        return "HER2-low"
    if score == 3:
        return "HER2-positive"
    if amp is None:
        return None
    return "HER2-positive" if amp == 1 else "HER2-low"


def her2_binary(ihc: Any, ish: Any = None) -> int | None:
    """1 for HER2-positive, 0 for HER2-negative (HER2-0 or HER2-low), None when unknown."""
    cat = her2_category(ihc, ish)
    return None if cat is None else int(cat == "HER2-positive")


def her2_low_vs_zero(ihc: Any, ish: Any = None) -> int | None:
    """1 for HER2-low, 0 for HER2-0, None for HER2-positive or unknown (excluded from this question)."""
    cat = her2_category(ihc, ish)
    if cat is None or cat == "HER2-positive":
        return None
    return int(cat == "HER2-low")


def her2_status_change(
    ihc_before: Any,
    ish_before: Any,
    ihc_after: Any,
    ish_after: Any,
    scheme: str = "three",
) -> int | None:
    """1 when the HER2 status differs between the two time points, 0 when equal, None when either is unknown.

    Args:
        ihc_before: IHC score at baseline (biopsy).
        ish_before: ISH result at baseline.
        ihc_after: IHC score after treatment (surgical specimen).
        ish_after: ISH result after treatment.
        scheme: ``"three"`` (HER2-0 / low / positive, as in seed 000's subgroups) or ``"binary"``.
    """
    if scheme == "three":
        a, b = her2_category(ihc_before, ish_before), her2_category(ihc_after, ish_after)
    elif scheme == "binary":
        a, b = her2_binary(ihc_before, ish_before), her2_binary(ihc_after, ish_after)
    else:
        raise ValueError(f"scheme={scheme!r}: expected 'three' or 'binary'")
    if a is None or b is None:
        return None
    return int(a != b)


def apply_label(kind: str, rows: Iterable[dict[str, Any]]) -> list[int | None]:
    """Compute one label per row (a dict of clinical columns) by name.

    Args:
        kind: ``binary`` (columns ``ihc``, ``ish``), ``low_vs_zero`` (``ihc``, ``ish``) or ``change``
            (``ihc_before``, ``ish_before``, ``ihc_after``, ``ish_after``).
        rows: one dict per patient.
    """
    out: list[int | None] = []
    for r in rows:
        if kind == "binary":
            out.append(her2_binary(r.get("ihc"), r.get("ish")))
        elif kind == "low_vs_zero":
            out.append(her2_low_vs_zero(r.get("ihc"), r.get("ish")))
        elif kind == "change":
            out.append(
                her2_status_change(
                    r.get("ihc_before"), r.get("ish_before"), r.get("ihc_after"), r.get("ish_after")
                )
            )
        else:
            raise ValueError(f"kind={kind!r}: expected 'binary', 'low_vs_zero' or 'change'")
    return out
