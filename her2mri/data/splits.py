"""Patient-level splits: the official split column, or k-fold split files generated once and reused.

The split is a file (as in nnU-Net): :func:`make_kfold_split` draws stratified folds once and saves them as
JSON; from then on the file is the truth. Asking for a fold that is not in the file is a ValueError, never a
silent new random split.

k-fold scheme: the patients are dealt into ``k`` stratified parts. In fold ``f``, part ``f`` is the test set
(so each patient is tested exactly once across the folds), a seeded stratified ``val_fraction`` of the other
patients is the validation set (early stopping, model selection), and the rest is the training set.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from her2mri.data.errors import DataError
from her2mri.io_utils import atomic_write_text

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")
SPLIT_FILE_VERSION = 1


def _check_inputs(pids: Sequence[str], labels: Sequence[int | None]) -> None:
    if len(pids) != len(labels):
        raise ValueError(f"pids and labels differ in length: {len(pids)} != {len(labels)}")
    if len(set(pids)) != len(pids):
        dup = sorted({p for p in pids if list(pids).count(p) > 1})
        raise ValueError(f"pids contains duplicates: {dup[:10]}")


def _by_class(pids: Sequence[str], labels: Sequence[int | None]) -> dict[int, list[str]]:
    groups: dict[int, list[str]] = {}
    for p, y in zip(pids, labels, strict=True):
        groups.setdefault(-1 if y is None else int(y), []).append(p)
    return {c: sorted(v) for c, v in sorted(groups.items())}


def stratified_carve(
    pids: Sequence[str], labels: Sequence[int | None], fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split patients into (kept, carved) with about ``fraction`` of each class carved out, seeded.

    Each class with at least two patients gives at least one carved patient when ``fraction > 0``, so a
    carved validation set has both classes whenever possible.

    Args:
        pids: patient ids (unique).
        labels: 0/1 (or None) per pid.
        fraction: fraction in [0, 1).
        seed: random seed.

    Returns:
        ``(kept, carved)``, each sorted.
    """
    _check_inputs(pids, labels)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction={fraction!r} must be in [0, 1)")
    rng = np.random.default_rng(seed)
    kept: list[str] = []
    carved: list[str] = []
    for _, members in _by_class(pids, labels).items():
        order = [members[i] for i in rng.permutation(len(members))]
        n = round(fraction * len(order))
        if fraction > 0 and n == 0 and len(order) >= 2:
            n = 1
        n = min(n, len(order) - 1) if len(order) > 1 else 0
        carved.extend(order[:n])
        kept.extend(order[n:])
    return sorted(kept), sorted(carved)


def make_kfold_split(
    pids: Sequence[str],
    labels: Sequence[int | None],
    k: int,
    seed: int,
    path: str | Path | None = None,
    val_fraction: float = 0.2,
) -> dict[str, Any]:
    """Draw patient-level stratified k folds (train/val/test per fold) and optionally save them as JSON.

    Args:
        pids: patient ids, unique.
        labels: 0/1 (or None) per pid; folds are stratified on it.
        k: number of folds, >= 2 and <= the number of patients.
        seed: random seed.
        path: JSON file to write (atomically); None writes nothing.
        val_fraction: fraction of the non-test patients of each fold used for validation, in [0, 1).

    Returns:
        The split dict: ``{"version", "k", "seed", "val_fraction", "folds": {"0": {"train": [...], "val":
        [...], "test": [...]}, ...}}``.
    """
    _check_inputs(pids, labels)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2 or k > len(pids):
        raise ValueError(f"k={k!r} must be an integer in [2, {len(pids)}] (the number of patients)")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction!r} must be in [0, 1)")
    rng = np.random.default_rng(seed)
    label_of = dict(zip(pids, labels, strict=True))
    parts: list[list[str]] = [[] for _ in range(k)]
    pos = int(rng.integers(0, k))
    for _, members in _by_class(pids, labels).items():
        for i in rng.permutation(len(members)):  # deal round-robin: stratified and balanced in size
            parts[pos % k].append(members[i])
            pos += 1
    folds: dict[str, dict[str, list[str]]] = {}
    for f in range(k):
        rest = [p for g, part in enumerate(parts) if g != f for p in part]
        train, val = stratified_carve(rest, [label_of[p] for p in rest], val_fraction, seed + 1000 + f)
        folds[str(f)] = {"train": train, "val": val, "test": sorted(parts[f])}
    split = {
        "version": SPLIT_FILE_VERSION,
        "k": k,
        "seed": seed,
        "val_fraction": val_fraction,
        "folds": folds,
    }
    if path is not None:
        save_split(split, path)
    return split


def save_split(split: dict[str, Any], path: str | Path) -> Path:
    """Write a split dict as JSON atomically (temporary file, then rename)."""
    return atomic_write_text(path, json.dumps(split, indent=1, sort_keys=True))


def _check_disjoint(fold: dict[str, list[str]], source: str) -> None:
    seen: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for pid in fold.get(name, []):
            if pid in seen:
                raise DataError(f"{source}: pid {pid} is in two splits ({seen[pid]} and {name})")
            seen[pid] = name


def load_split(path: str | Path, fold: int) -> dict[str, list[str]]:
    """Read fold ``fold`` of a split file.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``.

    Raises:
        DataError: unreadable or malformed file, or a pid in two splits of the fold.
        ValueError: ``fold`` is not in the file (the message lists the available folds).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        folds = data["folds"]
        if not isinstance(folds, dict):
            raise TypeError("'folds' is not an object")
    except FileNotFoundError:
        raise DataError(f"{path}: split file not found") from None
    except Exception as exc:
        raise DataError(f"{path}: not a valid split file ({type(exc).__name__}: {exc})") from exc
    if str(fold) not in folds:
        raise ValueError(
            f"fold={fold!r} is not in split file {path}; available folds: {sorted(folds, key=int)}"
        )
    entry = folds[str(fold)]
    if not isinstance(entry, dict) or any(not isinstance(entry.get(s, []), list) for s in SPLIT_NAMES):
        raise DataError(f"{path}: fold {fold} is malformed (expected lists 'train', 'val', 'test')")
    out = {s: [str(p) for p in entry.get(s, [])] for s in SPLIT_NAMES}
    _check_disjoint(out, f"{path} (fold {fold})")
    return out


def kfold_split(
    path: str | Path,
    pids: Sequence[str],
    labels: Sequence[int | None],
    fold: int,
    k: int = 5,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> dict[str, list[str]]:
    """Fold ``fold`` of the split file at ``path``, generating the file first if it does not exist.

    An existing file is reused as it is (the file is the truth): ``k`` must agree with it, every pid of the
    cohort must be in it, and pids of the file that are not in the cohort are dropped with a warning.

    Raises:
        ValueError: ``fold`` not in the file, or ``k`` differs from the file's.
        DataError: a cohort pid missing from the file, a pid in two splits, a malformed file.
    """
    path = Path(path)
    if not path.exists():
        make_kfold_split(pids, labels, k, seed, path=path, val_fraction=val_fraction)
    else:
        try:
            file_k = json.loads(path.read_text()).get("k")
        except Exception as exc:
            raise DataError(f"{path}: not a valid split file ({type(exc).__name__}: {exc})") from exc
        if file_k is not None and int(file_k) != k:
            raise ValueError(
                f"k={k} differs from the split file {path} (k={file_k}); delete it or set k={file_k}"
            )
    split = load_split(path, fold)
    in_file = {p for s in SPLIT_NAMES for p in split[s]}
    cohort = set(pids)
    absent = sorted(cohort - in_file)
    if absent:
        raise DataError(
            f"{path}: {len(absent)} pid(s) of the cohort are not in the split file (e.g. {absent[:5]}); "
            "the file was made for another cohort: delete it to regenerate"
        )
    extra = sorted(in_file - cohort)
    if extra:
        warnings.warn(
            f"{path}: {len(extra)} pid(s) of the split file are not in the cohort; ignored", stacklevel=2
        )
    return {s: [p for p in split[s] if p in cohort] for s in SPLIT_NAMES}


def official_split(
    pids: Sequence[str],
    splits: Sequence[str | None],
    labels: Sequence[int | None],
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Group patients by their official split; carve a validation set out of train when there is none.

    The fallback validation set is a seeded, stratified, patient-level ``val_fraction`` of the training
    patients (see :func:`stratified_carve`); a warning says so. Patients without a split are left out with a
    warning.
    """
    out: dict[str, list[str]] = {s: [] for s in SPLIT_NAMES}
    none: list[str] = []
    for p, s in zip(pids, splits, strict=True):
        if s is None:
            none.append(p)
        elif s in out:
            out[s].append(p)
        else:
            raise ValueError(f"split {s!r} of pid {p} is not one of {SPLIT_NAMES}")
    if none:
        warnings.warn(
            f"{len(none)} patient(s) have no official split and are left out (e.g. {none[:5]}); to score "
            "every patient of an external cohort (a manifest without a split column), use her2mri-eval "
            "split=all",
            stacklevel=2,
        )
    if not out["val"] and out["train"] and val_fraction > 0:
        label_of = dict(zip(pids, labels, strict=True))
        train, val = stratified_carve(out["train"], [label_of[p] for p in out["train"]], val_fraction, seed)
        out["train"], out["val"] = train, val
        warnings.warn(
            f"the cohort has no validation patients: {len(val)} of the training patients (stratified, seed "
            f"{seed}, fraction {val_fraction}) are used for validation",
            stacklevel=2,
        )
    return out
