"""Preprocessing configuration (:class:`PreprocessConfig`), its valid option names and its Hydra schema.

The Hydra group ``preprocess/`` maps 1:1 on the fields of :class:`PreprocessConfig`: :data:`PreprocessSchema`,
a structured config built from the dataclass's own fields, is stored in Hydra's ConfigStore as
``preprocess/base`` (:func:`register_preprocess_schema`), and the presets of ``conf/preprocess/`` are tiny
YAMLs on top of it. A key that is not a field (``preprocess.chanels=x``) or a value of the wrong type then
fails when Hydra composes; the values are validated by :class:`PreprocessConfig` itself. ``key()`` is the
stable hash the slice cache uses, so any change of a field gives a new cache entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from her2mri.options import check_choice

NORMALIZATIONS: tuple[str, ...] = (
    "minmax_slice",
    "minmax_volume",
    "minmax_global",
    "clip_global_q95",
    "clip_global_q98",
    "clip_global_q99",
    "clip_channel_q95",
    "clip_channel_q98",
    "clip_channel_q99",
    "zscore",
)
STATS_SCOPES: tuple[str, ...] = ("volume", "slice", "cohort")
STATS_MASKS: tuple[str, ...] = ("none", "foreground", "tumour_bbox")
SLICE_SELECTIONS: tuple[str, ...] = ("central", "largest", "all", "spread")
CROP_MODES: tuple[str, ...] = ("pixels", "mm")
VIEWS: tuple[str, ...] = ("single", "adjacent", "scales", "phases", "volume")
CHANNELS: tuple[str, ...] = ("phases", "subtraction", "kinetic")
#: normalisations with one intensity map for the three phases (needed by subtraction / kinetic channels)
JOINT_NORMALIZATIONS: tuple[str, ...] = (
    "minmax_global",
    "clip_global_q95",
    "clip_global_q98",
    "clip_global_q99",
)
CACHE_DTYPES: tuple[str, ...] = ("uint8", "float16")


def _check_number(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    ok_type = isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}={value!r} must be {kind} in [{low}, {high}].")


@dataclass(frozen=True)
class PreprocessConfig:
    """How a DCE-MRI case becomes RGB slices (see docs/preprocessing.md for every option and why).

    Args:
        normalization: intensity normalisation, one of :data:`NORMALIZATIONS`. Default ``clip_channel_q98``
            (per-phase upper clipping at the 98th percentile), the paper's best (test AUC 0.744).
        stats_scope: where statistics are computed: ``volume`` (default, per patient), ``slice`` (per slice)
            or ``cohort`` (one map per phase from the training split, stored in ``cohort_stats``).
        stats_mask: which voxels the statistics use: ``none`` (all), ``foreground`` (pre-contrast voxels above
            10 % of its 99th percentile) or ``tumour_bbox`` (3-D bounding box of the tumour).
        lower_percentile: lower bound in percent, 0 to 50 (0 = minimum).
        upper_percentile: upper bound in percent, 50 to 100; None (default) = the one in the normalisation
            name (98 for ``clip_channel_q98``, 100 for ``minmax_*``). Not used by ``zscore``.
        cohort_stats: ``((lo, hi), (lo, hi), (lo, hi))`` per phase for ``stats_scope='cohort'``, computed on
            the training split by the datamodule (:mod:`her2mri.data.cohort_stats`) and stored in the
            checkpoint; None = not yet computed.
        n4: SimpleITK N4 bias-field correction of each phase first (disk-cached). Default off: the paper
            found that N4 slightly degraded deep-learning performance.
        slice_selection: ``central``, ``largest``, ``all`` or ``spread``.
        n_slices: k for central / largest / spread, 1 to 512.
        trim: fraction of the tumour z-range trimmed at each end for ``spread``, in [0, 0.5).
        crop_mode: ``pixels`` or ``mm`` (crop side divided by the in-plane spacing).
        crop_size: crop side in pixels or mm, > 0.
        image_size: output side after resizing, 8 to 4096.
        views: ``single``, ``adjacent`` (slices z-1, z, z+1), ``scales`` (three crop sizes), ``phases``
            (view k = channel k of the selected slice, one per THDA head) or ``volume`` (one 3-D box per
            case).
        channels: the three image channels: ``phases`` (pre, early, late; default), ``subtraction`` (pre,
            early-pre, late-early) or ``kinetic`` (early-pre, late-early, wash-out ratio); see
            :mod:`her2mri.data.channels`. ``subtraction``/``kinetic`` need a joint normalisation.
        phase_channels: channels per view for ``views='phases'``: 1, or 3 (the phase repeated, so ImageNet
            weights fit; default).
        volume_depth: slices of the box for ``views='volume'`` (centred on the tumour), 1 to 512.
        kinetic_eps: floor of the early enhancement in the wash-out ratio of ``channels='kinetic'``, > 0.
        view_scales: three positive crop-size factors for ``views == "scales"``.
        cache_dtype: ``uint8`` (exact 8-bit quantisation) or ``float16``.

    Example:
        >>> cfg = PreprocessConfig(normalization="clip_global_q99", views="adjacent")
        >>> PreprocessConfig.from_dict(cfg.to_dict()).key() == cfg.key()
        True
    """

    normalization: str = "clip_channel_q98"
    stats_scope: str = "volume"
    stats_mask: str = "none"
    lower_percentile: float = 0.0
    upper_percentile: float | None = None
    cohort_stats: tuple[tuple[float, float], ...] | None = None
    n4: bool = False
    slice_selection: str = "central"
    n_slices: int = 4
    trim: float = 0.15
    crop_mode: str = "pixels"
    crop_size: float = 128.0
    image_size: int = 224
    views: str = "single"
    view_scales: tuple[float, float, float] = (0.75, 1.0, 1.5)
    cache_dtype: str = "uint8"
    channels: str = "phases"
    phase_channels: int = 3
    volume_depth: int = 16
    kinetic_eps: float = 0.05

    def __post_init__(self) -> None:
        check_choice("normalization", self.normalization, NORMALIZATIONS)
        check_choice("stats_scope", self.stats_scope, STATS_SCOPES)
        check_choice("stats_mask", self.stats_mask, STATS_MASKS)
        _check_number("lower_percentile", self.lower_percentile, 0.0, 50.0)
        if not isinstance(self.n4, bool):
            raise ValueError(f"n4={self.n4!r} must be a bool.")
        check_choice("slice_selection", self.slice_selection, SLICE_SELECTIONS)
        _check_number("n_slices", self.n_slices, 1, 512, integer=True)
        _check_number("trim", self.trim, 0.0, 0.499999)
        check_choice("crop_mode", self.crop_mode, CROP_MODES)
        _check_number("crop_size", self.crop_size, 1e-6, 1e6)
        _check_number("image_size", self.image_size, 8, 4096, integer=True)
        check_choice("views", self.views, VIEWS)
        scales = self.view_scales
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence) or len(scales) != 3:
            raise ValueError(f"view_scales={scales!r} must be three positive numbers.")
        for s in scales:
            _check_number("view_scales", s, 1e-3, 100.0)
        # normalise lists (Hydra ListConfig, JSON) to a tuple of floats so key() is stable
        object.__setattr__(self, "view_scales", tuple(float(s) for s in scales))
        object.__setattr__(self, "lower_percentile", float(self.lower_percentile))
        object.__setattr__(self, "trim", float(self.trim))
        object.__setattr__(self, "crop_size", float(self.crop_size))
        object.__setattr__(self, "n_slices", int(self.n_slices))
        object.__setattr__(self, "image_size", int(self.image_size))
        check_choice("cache_dtype", self.cache_dtype, CACHE_DTYPES)
        self._check_new_fields()

    def _check_new_fields(self) -> None:
        """Check the fields added for issue 15 (percentiles, cohort scope, channels, phase/volume views)."""
        if self.upper_percentile is not None:
            if self.normalization == "zscore":
                raise ValueError(
                    f"upper_percentile={self.upper_percentile!r} does not apply to normalization='zscore'; "
                    "set it to null or choose a clip_* / minmax_* normalisation."
                )
            _check_number("upper_percentile", self.upper_percentile, 50.0, 100.0)
            if float(self.upper_percentile) <= self.lower_percentile:
                raise ValueError(
                    f"upper_percentile={self.upper_percentile!r} must be above "
                    f"lower_percentile={self.lower_percentile!r}."
                )
            object.__setattr__(self, "upper_percentile", float(self.upper_percentile))
        if self.stats_scope == "cohort" and self.n4:
            raise ValueError(
                "stats_scope='cohort' with n4=true is not supported: the cohort statistics are computed on "
                "the "
                "uncorrected volumes; set n4=false or stats_scope=volume."
            )
        if self.stats_scope == "cohort" and self.normalization == "minmax_slice":
            raise ValueError(
                "stats_scope='cohort' with normalization='minmax_slice': per-slice statistics cannot come "
                "from the cohort; choose another normalisation."
            )
        if self.cohort_stats is not None:
            stats = self.cohort_stats
            ok = isinstance(stats, Sequence) and not isinstance(stats, str) and len(stats) == 3
            rows: list[tuple[float, float]] = []
            for row in stats if ok else []:
                if isinstance(row, str) or not isinstance(row, Sequence) or len(row) != 2:
                    ok = False
                    break
                lo, hi = (float(v) for v in row)
                if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                    ok = False
                    break
                rows.append((lo, hi))
            if not ok:
                raise ValueError(
                    f"cohort_stats={stats!r} must be three (lo, hi) pairs of finite numbers with hi > lo."
                )
            object.__setattr__(self, "cohort_stats", tuple(rows))
        check_choice("channels", self.channels, CHANNELS)
        if self.channels != "phases" and self.normalization not in JOINT_NORMALIZATIONS:
            raise ValueError(
                f"channels={self.channels!r} subtracts phases, which needs one intensity map for the three "
                f"phases, but normalization={self.normalization!r} maps each phase on its own; use "
                f"normalization={', '.join(JOINT_NORMALIZATIONS)} (e.g. preprocess=clip_global_q99)."
            )
        if self.phase_channels not in (1, 3) or isinstance(self.phase_channels, bool):
            raise ValueError(f"phase_channels={self.phase_channels!r} must be 1 or 3.")
        _check_number("volume_depth", self.volume_depth, 1, 512, integer=True)
        _check_number("kinetic_eps", self.kinetic_eps, 1e-6, 1.0)
        object.__setattr__(self, "kinetic_eps", float(self.kinetic_eps))
        object.__setattr__(self, "phase_channels", int(self.phase_channels))
        object.__setattr__(self, "volume_depth", int(self.volume_depth))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (``view_scales`` as a list), JSON-serialisable."""
        d = dataclasses.asdict(self)
        d["view_scales"] = list(self.view_scales)
        if self.cohort_stats is not None:
            d["cohort_stats"] = [list(row) for row in self.cohort_stats]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PreprocessConfig:
        """Build from a mapping (e.g. a Hydra/OmegaConf node); unknown keys raise ValueError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        unknown = sorted(set(d) - names)
        if unknown:
            for key in unknown:
                check_choice("PreprocessConfig key", key, sorted(names))
        if "view_scales" in d and d["view_scales"] is not None and not isinstance(d["view_scales"], str):
            d["view_scales"] = tuple(d["view_scales"])
        if d.get("cohort_stats") is not None and not isinstance(d["cohort_stats"], str):
            d["cohort_stats"] = tuple(tuple(row) for row in d["cohort_stats"])
        return cls(**d)

    def key(self) -> str:
        """Stable short hash (16 hex chars of the sha1 of the sorted JSON of the fields)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]


#: Hydra/OmegaConf type of each annotation used by :class:`PreprocessConfig` (a new annotation must be added)
_SCHEMA_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "float | None": Optional[float],  # noqa: UP045 - OmegaConf reads typing.Optional
    "tuple[float, float, float]": list[float],
    "tuple[tuple[float, float], ...] | None": Optional[Any],  # noqa: UP045 - (lo, hi) pairs, checked by the dataclass
}
#: schema defaults that differ from the dataclass: ``views: auto`` is resolved against the model by
#: :func:`her2mri.data.build.preprocess_from_cfg` before :class:`PreprocessConfig` is built
_SCHEMA_DEFAULTS: dict[str, Any] = {"views": "auto"}
#: name of the schema in the ``preprocess`` group of Hydra's ConfigStore (``preprocess=base``: schema alone)
SCHEMA_NAME = "base"


def _schema_field(f: dataclasses.Field[Any]) -> tuple[str, Any, Any]:
    type_name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    if type_name not in _SCHEMA_TYPES:
        raise TypeError(f"PreprocessConfig.{f.name}: annotation {type_name!r} has no Hydra schema type")
    default = _SCHEMA_DEFAULTS.get(f.name, f.default)
    if isinstance(default, tuple):
        return f.name, _SCHEMA_TYPES[type_name], dataclasses.field(default_factory=lambda d=default: list(d))
    return f.name, _SCHEMA_TYPES[type_name], dataclasses.field(default=default)


#: The structured config of the ``preprocess`` group: the fields and defaults of :class:`PreprocessConfig`
#: (``views`` defaults to ``auto``), typed for OmegaConf. Built from the dataclass, so nothing mirrors it.
PreprocessSchema: type = dataclasses.make_dataclass(
    "PreprocessSchema",
    [_schema_field(f) for f in dataclasses.fields(PreprocessConfig)],
)
PreprocessSchema.__module__ = __name__

#: name of the override schema in the ``preprocess`` group (``her2mri-eval``: null = the checkpoint's value)
OVERRIDES_NAME = "from_checkpoint"


def _override_field(f: dataclasses.Field[Any]) -> tuple[str, Any, Any]:
    name, kind, _ = _schema_field(f)
    optional = kind if kind in (Optional[float], Optional[Any]) else Optional[kind]  # noqa: UP045
    return name, optional, dataclasses.field(default=None)


#: The ``preprocess`` node of ``her2mri-eval``: every field of :class:`PreprocessConfig`, each None by default
#: (None = the value stored in the checkpoint; a value replaces it). Built from the dataclass too.
PreprocessOverrides: type = dataclasses.make_dataclass(
    "PreprocessOverrides", [_override_field(f) for f in dataclasses.fields(PreprocessConfig)]
)
PreprocessOverrides.__module__ = __name__


def register_preprocess_schema() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent).

    :data:`PreprocessSchema` as ``preprocess/base`` (the presets of ``conf/preprocess/`` start with
    ``defaults: [base, _self_]``) and :data:`PreprocessOverrides` as ``preprocess/from_checkpoint`` (the
    default of ``her2mri-eval``). Every entry point that composes a config (the Hydra CLIs, through
    :mod:`her2mri.cli._config`, and tests) calls this first.
    """
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    store.store(group="preprocess", name=SCHEMA_NAME, node=PreprocessSchema)
    store.store(group="preprocess", name=OVERRIDES_NAME, node=PreprocessOverrides)
