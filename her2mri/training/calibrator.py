"""The calibration file saved beside a checkpoint: a recalibrator and/or split-conformal sets, as JSON.

``her2mri-eval ... recalibrate=platt conformal_alpha=0.1`` fits them on a calibration set and writes
``<checkpoint>.calibration.json`` (see :func:`calibration_path`); prediction loads it with
:func:`load_calibration` and applies it with :meth:`CalibrationBundle.apply`: first the recalibrator maps the
model's probability, then the conformal sets are read off the recalibrated probability. The file holds plain
numbers only (no pickle), so reading it never executes anything.

File layout (``format: her2mri-calibration``, ``version: 1``)::

    {"format": "her2mri-calibration", "version": 1, "created": "...", "ckpt_path": "...",
     "calibration_set": {"source": "split|fraction|manifest", "n": 40, "n_pos": 12, ...},
     "recalibrator": {"method": "platt", "params": {"a": ..., "b": ...}, ...} | null,
     "conformal": {"alpha": 0.1, "mode": "marginal", "qhat": {"all": ...}, ...} | null}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from her2mri.data.errors import DataError
from her2mri.io_utils import atomic_write_text
from her2mri.stats.conformal import ConformalCalibration
from her2mri.stats.recalibration import Recalibrator

__all__ = [
    "FORMAT",
    "VERSION",
    "CalibrationBundle",
    "calibration_path",
    "load_calibration",
    "resolve_calibration",
    "save_calibration",
]

FORMAT = "her2mri-calibration"
VERSION = 1


def calibration_path(ckpt_path: str | Path, name: str | None = None) -> Path:
    """``<ckpt>.calibration.json`` (``<ckpt>.calibration.<name>.json`` with a name, e.g. one per site)."""
    ckpt = Path(ckpt_path)
    suffix = f".calibration.{name}.json" if name else ".calibration.json"
    return ckpt.with_name(ckpt.name + suffix)


@dataclass
class CalibrationBundle:
    """A recalibrator and/or a conformal calibration for one checkpoint.

    Attributes:
        recalibrator: maps the model's probability (``None``: identity).
        conformal: split-conformal sets on the (recalibrated) probability (``None``: no sets).
        ckpt_path: the checkpoint it was fitted for.
        calibration_set: where the calibration patients came from and how many.
        created: UTC time stamp.
    """

    recalibrator: Recalibrator | None = None
    conformal: ConformalCalibration | None = None
    ckpt_path: str | None = None
    calibration_set: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def apply(self, probs: Any) -> dict[str, Any]:
        """Recalibrated probabilities and conformal calls of the model's probabilities.

        Args:
            probs: the model's probabilities of HER2-positive.

        Returns:
            ``{"prob": recalibrated (or unchanged) float64 array, "call": list of HER2-/HER2+/uncertain/empty
            or None without conformal sets}``.
        """
        p = np.asarray(probs, dtype=np.float64)
        q = self.recalibrator.apply(p) if self.recalibrator is not None else p
        calls = self.conformal.calls(q) if self.conformal is not None else None
        return {"prob": q, "call": calls}

    def to_dict(self) -> dict[str, Any]:
        """The saved JSON form."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "created": self.created or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ckpt_path": self.ckpt_path,
            "calibration_set": self.calibration_set,
            "recalibrator": self.recalibrator.to_dict() if self.recalibrator is not None else None,
            "conformal": self.conformal.to_dict() if self.conformal is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> CalibrationBundle:
        """Rebuild from :meth:`to_dict` output.

        Raises:
            DataError: not a her2mri calibration, an unknown version, or bad parameters (names ``source``).
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DataError(f"{source}: not a her2mri calibration file (format != {FORMAT!r}).")
        if data.get("version") != VERSION:
            raise DataError(
                f"{source}: calibration file version {data.get('version')!r}; expected {VERSION}."
            )
        try:
            rec = Recalibrator.from_dict(data["recalibrator"]) if data.get("recalibrator") else None
            conf = ConformalCalibration.from_dict(data["conformal"]) if data.get("conformal") else None
        except ValueError as exc:
            raise DataError(f"{source}: {exc}") from exc
        if rec is None and conf is None:
            raise DataError(f"{source}: holds neither a recalibrator nor a conformal calibration.")
        return cls(
            recalibrator=rec,
            conformal=conf,
            ckpt_path=data.get("ckpt_path"),
            calibration_set=dict(data.get("calibration_set") or {}),
            created=str(data.get("created") or ""),
        )


def save_calibration(bundle: CalibrationBundle, path: str | Path) -> Path:
    """Write the bundle as JSON atomically (temporary file in the same folder, then rename).

    Returns:
        The path written.
    """
    return atomic_write_text(path, json.dumps(bundle.to_dict(), indent=1, allow_nan=False) + "\n")


def load_calibration(path: str | Path) -> CalibrationBundle:
    """Read a calibration file written by :func:`save_calibration` (JSON only, nothing is executed).

    Raises:
        FileNotFoundError: the file does not exist.
        DataError: unreadable JSON or not a valid calibration (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: calibration file not found.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as JSON ({exc}).") from exc
    return CalibrationBundle.from_dict(data, str(path))


def resolve_calibration(ckpt_paths: list[str], calibration: str | Path | None) -> Path | None:
    """The calibration file prediction applies.

    Args:
        ckpt_paths: the checkpoints of the prediction.
        calibration: ``"auto"`` (``<ckpt>.calibration.json`` beside a single checkpoint when it exists),
            ``None`` / ``"none"`` (never), or the path of a calibration file (one checkpoint only: the file
            was fitted on that checkpoint's probabilities, not on an ensemble mean).

    Returns:
        The file, or ``None``.

    Raises:
        FileNotFoundError: an explicit file that does not exist.
        ValueError: an explicit file with several checkpoints.
    """
    if calibration is None or str(calibration).lower() == "none":
        return None
    if str(calibration).lower() == "auto":
        if len(ckpt_paths) != 1:
            return None
        path = calibration_path(ckpt_paths[0])
        return path if path.is_file() else None
    path = Path(calibration).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"calibration={str(calibration)!r}: calibration file not found.")
    if len(ckpt_paths) != 1:
        raise ValueError(
            f"calibration={str(calibration)!r} was fitted on one checkpoint's probabilities; got "
            f"{len(ckpt_paths)} checkpoints (an ensemble mean needs its own calibration)."
        )
    return path
