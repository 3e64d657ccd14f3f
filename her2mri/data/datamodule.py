"""``DCEDataModule``: cohort -> splits -> cached preprocessing -> slice datasets and loaders.

See docs/data.md for every option. Batches follow ARCHITECTURE.md §4: ``image`` float32 ``(B, 3, H, W)`` or
``(B, 3, 3, H, W)``, ``label`` int64 ``(B,)``, ``pid`` list[str], ``slice_idx`` int64 ``(B,)`` and, when every
case has a voxel mask, ``mask`` float32 ``(B, 1, H, W)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler, default_collate

from her2mri.data.dataset import SliceDataset
from her2mri.data.prepare import prepare_cohort
from her2mri.data.preprocess_config import PreprocessConfig
from her2mri.data.records import CaseRecord
from her2mri.data.splits import SPLIT_NAMES, kfold_split, official_split
from her2mri.options import check_choice

SOURCES: tuple[str, ...] = ("breastdcedl", "manifest", "rgb_slices")
SPLIT_MODES: tuple[str, ...] = ("official", "kfold")
DEFAULT_LABEL_COLS: dict[str, str] = {"breastdcedl": "HER2pos", "manifest": "label", "rgb_slices": "her2"}


def _opt_path(p: str | Path | None) -> Path | None:
    return None if p is None or str(p) == "" else Path(p).expanduser()


class DCEDataModule(L.LightningDataModule):
    """Lightning DataModule for HER2 prediction from DCE-MRI slices.

    Args:
        source: ``breastdcedl`` (NIfTI release + metadata CSV), ``manifest`` (generic CSV) or ``rgb_slices``
            (pre-fused PNG slices + index CSV).
        root: BreastDCEDL folder searched for phase/mask files (``breastdcedl``).
        metadata_csv: BreastDCEDL metadata CSV (``breastdcedl``).
        manifest_csv: manifest CSV (``manifest``).
        index_csv: slice index CSV (``rgb_slices``).
        image_dir: folder of the RGB slices (``rgb_slices``; default: found next to the CSV).
        label_col: label column; None = source default (``HER2pos``, ``label``, ``her2``).
        preprocess: a :class:`PreprocessConfig` or a dict of its fields; None = defaults.
        cache_dir: cache root for preprocessed cases and generated split files; None = in memory only.
        batch_size: training batch size (slices).
        eval_batch_size: batch size of val/test/predict loaders; None = ``batch_size``.
        num_workers: DataLoader workers.
        pin_memory: DataLoader ``pin_memory``.
        persistent_workers: keep workers between epochs (only when ``num_workers > 0``).
        split_mode: ``official`` (split column of the cohort) or ``kfold`` (split file).
        fold: fold to use in ``kfold`` mode.
        n_folds: number of folds when the split file is generated (must match an existing file).
        split_file: JSON split file; generated once when absent. None = ``cache_dir/splits/<auto name>.json``.
        val_fraction: fraction of training patients carved out (stratified, seeded) for validation when the
            official split has no validation patients, and the validation share in generated k-fold files.
        balanced_sampling: draw training slices with a class-balanced ``WeightedRandomSampler``.
        augment: apply the MONAI augmentation of :func:`~her2mri.data.augment.dce_augmentation` to training
            items (one draw per sample for every view, phase and the mask).
        augment_kwargs: arguments of :func:`~her2mri.data.augment.dce_augmentation` (e.g.
            ``{"rotate_deg": 15}``).
        imagenet_norm: ImageNet mean/std normalisation of the images (default True).
        seed: seed of splits carved here, the sampler, the shuffling and the augmentation.
        num_preprocess_workers: parallel processes for preprocessing cases not yet cached (0 = in process).
        axis_order: axes of stored volumes (``zyx`` as BreastDCEDL).
        missing: BreastDCEDL pids without files: ``skip`` (warn) or ``error``.
        require_label: an empty label is an error (default); False keeps the case with label -1.
        datasets: BreastDCEDL datasets to keep (``spy1``, ``spy2``, ``duke``); None = all.
        split_map: raw split value -> train/val/test for ``rgb_slices``.
        drop_last: drop the last incomplete training batch.
        progress: show a progress bar while preprocessing.
    """

    def __init__(
        self,
        source: str = "breastdcedl",
        root: str | Path | None = None,
        metadata_csv: str | Path | None = None,
        manifest_csv: str | Path | None = None,
        index_csv: str | Path | None = None,
        image_dir: str | Path | None = None,
        label_col: str | None = None,
        preprocess: PreprocessConfig | Mapping[str, Any] | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
        split_mode: str = "official",
        fold: int = 0,
        n_folds: int = 5,
        split_file: str | Path | None = None,
        val_fraction: float = 0.2,
        balanced_sampling: bool = False,
        augment: bool = True,
        augment_kwargs: Mapping[str, Any] | None = None,
        imagenet_norm: bool = True,
        seed: int = 0,
        num_preprocess_workers: int = 0,
        axis_order: str = "zyx",
        missing: str = "skip",
        require_label: bool = True,
        datasets: list[str] | tuple[str, ...] | None = None,
        split_map: Mapping[str, str] | None = None,
        drop_last: bool = False,
        progress: bool = True,
    ) -> None:
        super().__init__()
        self.source = check_choice("source", source, SOURCES)
        self.split_mode = check_choice("split_mode", split_mode, SPLIT_MODES)
        self.root, self.metadata_csv = _opt_path(root), _opt_path(metadata_csv)
        self.manifest_csv, self.index_csv = _opt_path(manifest_csv), _opt_path(index_csv)
        self.image_dir = _opt_path(image_dir)
        needed = {
            "breastdcedl": {"root": self.root, "metadata_csv": self.metadata_csv},
            "manifest": {"manifest_csv": self.manifest_csv},
            "rgb_slices": {"index_csv": self.index_csv},
        }[self.source]
        for name, value in needed.items():
            if value is None:
                raise ValueError(f"{name}=None: source={source!r} needs {' and '.join(needed)}")
        self.label_col = label_col or DEFAULT_LABEL_COLS[self.source]
        if preprocess is None:
            self.cfg = PreprocessConfig()
        elif isinstance(preprocess, PreprocessConfig):
            self.cfg = preprocess
        else:
            self.cfg = PreprocessConfig.from_dict(preprocess)
        for name, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                 ("fold", fold, 0), ("n_folds", n_folds, 2),
                                 ("num_preprocess_workers", num_preprocess_workers, 0)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        if eval_batch_size is not None and (not isinstance(eval_batch_size, int) or eval_batch_size < 1):
            raise ValueError(f"eval_batch_size={eval_batch_size!r} must be an integer >= 1 or None")
        if not 0.0 <= float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction={val_fraction!r} must be in [0, 1)")
        if missing not in ("skip", "error"):
            raise ValueError(f"missing={missing!r} must be 'skip' or 'error'")
        self.cache_dir = _opt_path(cache_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and num_workers > 0
        self.fold, self.n_folds, self.split_file = fold, n_folds, _opt_path(split_file)
        self.val_fraction = float(val_fraction)
        self.balanced_sampling, self.augment = bool(balanced_sampling), bool(augment)
        self.augment_kwargs = dict(augment_kwargs or {})
        self.imagenet_norm, self.seed = bool(imagenet_norm), int(seed)
        self.num_preprocess_workers = num_preprocess_workers
        self.axis_order, self.missing, self.require_label = axis_order, missing, bool(require_label)
        self.datasets = tuple(datasets) if datasets is not None else None
        self.split_map = dict(split_map) if split_map is not None else None
        self.drop_last, self.progress = bool(drop_last), bool(progress)
        if self.split_mode == "kfold" and self.split_file is None and self.cache_dir is None:
            raise ValueError(
                "split_file=None and cache_dir=None: split_mode='kfold' needs a place for the split file"
            )

        self.records: list[CaseRecord] = []
        self.splits: dict[str, list[str]] = {}
        self.datasets_by_split: dict[str, SliceDataset] = {}
        self.with_mask = False
        self._arrays_by_pid: dict[str, dict[str, np.ndarray]] = {}
        self._setup_done = False

    # --- records
    def load_records(self) -> list[CaseRecord]:
        """Read the cohort (paths and metadata only; cheap)."""
        if self.source == "breastdcedl":
            from her2mri.data.readers import load_breastdcedl

            return load_breastdcedl(
                self.root,  # type: ignore[arg-type]
                self.metadata_csv,  # type: ignore[arg-type]
                label_col=self.label_col,
                axis_order=self.axis_order,
                missing=self.missing,
                require_label=self.require_label,
                datasets=self.datasets,
            )
        if self.source == "manifest":
            from her2mri.data.manifest import read_manifest

            return read_manifest(
                self.manifest_csv, require_label=self.require_label, axis_order=self.axis_order
            )  # type: ignore[arg-type]
        from her2mri.data.rgb import read_rgb_slices

        return read_rgb_slices(
            self.index_csv,  # type: ignore[arg-type]
            image_dir=self.image_dir,
            label_col=self.label_col,
            split_map=self.split_map,
            require_label=self.require_label,
        )

    def _default_split_file(self, pids: list[str]) -> Path:
        digest = hashlib.sha1("\n".join(sorted(pids)).encode()).hexdigest()[:10]
        name = f"{self.source}-{digest}-k{self.n_folds}-seed{self.seed}.json"
        return self.cache_dir / "splits" / name  # type: ignore[operator]

    def resolve_splits(self, records: list[CaseRecord]) -> dict[str, list[str]]:
        """Patient ids per split (``train``, ``val``, ``test``) for the configured split mode."""
        pids = [r.pid for r in records]
        labels = [r.label for r in records]
        if self.split_mode == "official":
            return official_split(pids, [r.split for r in records], labels, self.val_fraction, self.seed)
        path = self.split_file or self._default_split_file(pids)
        self.split_file = path
        return kfold_split(path, pids, labels, self.fold, self.n_folds, self.seed, self.val_fraction)

    # --- cohort statistics
    def fit_cohort_stats(self, records: list[CaseRecord] | None = None) -> PreprocessConfig:
        """For ``stats_scope='cohort'`` without ``cohort_stats``: compute them on the training split only.

        The bounds go into ``self.cfg.cohort_stats`` (and so into its cache key and, through the training run,
        into the checkpoint); validation, test and every later cohort use them unchanged. A config that
        already holds ``cohort_stats`` (e.g. from a checkpoint) is left as it is.

        Returns:
            The (possibly updated) preprocessing configuration.
        """
        if self.cfg.stats_scope != "cohort" or self.cfg.cohort_stats is not None:
            return self.cfg
        from her2mri.data.cohort_stats import fit_cohort_stats

        records = self.load_records() if records is None else records
        splits = self.resolve_splits(records)
        train = set(splits["train"])
        stats = fit_cohort_stats([r for r in records if r.pid in train], self.cfg, progress=self.progress)
        self.cfg = dataclasses.replace(self.cfg, cohort_stats=stats)
        return self.cfg

    # --- lightning
    def prepare_data(self) -> None:
        """Preprocess every case of the selected splits into the cache (once; no state kept)."""
        if self.cache_dir is None or self._setup_done:
            return
        records = self.load_records()
        self.fit_cohort_stats(records)
        splits = self.resolve_splits(records)
        keep = {p for s in SPLIT_NAMES for p in splits[s]}
        todo = [r for r in records if r.pid in keep]
        prepare_cohort(
            todo, self.cfg, self.cache_dir, self.num_preprocess_workers, self.progress, return_arrays=False
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the train/val/test datasets (loading cached cases, computing missing ones)."""
        if self._setup_done:
            return
        records = self.load_records()
        self.fit_cohort_stats(records)
        splits = self.resolve_splits(records)
        by_pid = {r.pid: r for r in records}
        selected = [by_pid[p] for s in SPLIT_NAMES for p in splits[s]]
        arrays = prepare_cohort(
            selected, self.cfg, self.cache_dir, self.num_preprocess_workers, self.progress
        )
        arrays_by_pid = {r.pid: a for r, a in zip(selected, arrays, strict=True)}
        n_masked = sum("masks" in a for a in arrays)
        with_mask = n_masked == len(arrays) and n_masked > 0
        if 0 < n_masked < len(arrays):
            warnings.warn(
                f"{n_masked} of {len(arrays)} cases have a tumour mask: batches carry no 'mask' key",
                stacklevel=2,
            )
        self.records, self.splits, self.with_mask = records, splits, with_mask
        self._arrays_by_pid = arrays_by_pid
        for s in SPLIT_NAMES:
            recs = [by_pid[p] for p in splits[s]]
            aug = self._make_augment() if s == "train" and self.augment else None
            self.datasets_by_split[s] = self._slice_dataset(
                recs, [arrays_by_pid[r.pid] for r in recs], aug, with_mask
            )
        self._setup_done = True

    @property
    def preprocessing(self) -> Any:
        """The deterministic preprocessing of one case: the ``monai.transforms.Compose`` run on every case.

        Built from ``self.cfg`` by :func:`her2mri.data.pipeline.preprocess_transform` (the cache calls it
        through :func:`her2mri.data.prepare.preprocess_record`); its input is ``{"record": CaseRecord}``.
        With ``stats_scope='cohort'`` it needs the training-split statistics first (:meth:`setup`).
        """
        from her2mri.data.pipeline import preprocess_transform

        source = "rgb" if self.source == "rgb_slices" else "volume"
        n4_dir = self.cache_dir / "n4" if self.cache_dir is not None else None
        return preprocess_transform(self.cfg, source, n4_cache_dir=n4_dir)

    @property
    def channel_dim(self) -> int:
        """Axis of the three phases/channels in one item's image: -3 (slices), -4 (phase views, volumes)."""
        return -4 if self.cfg.views in ("phases", "volume") else -3

    def _slice_dataset(
        self, recs: list[CaseRecord], arrays: list[dict[str, np.ndarray]], aug: Any, with_mask: bool
    ) -> SliceDataset:
        # ImageNet statistics follow the RGB axis: -3 for slices and for phase views (each an RGB image of one
        # repeated phase), -4 for volumes (3, D, H, W)
        norm_dim = -4 if self.cfg.views == "volume" else -3
        return SliceDataset(recs, arrays, aug, self.imagenet_norm, with_mask, channel_dim=norm_dim)

    def _make_augment(self) -> Any:
        from her2mri.data.augment import dce_augmentation

        kwargs = {"channel_dim": self.channel_dim, **self.augment_kwargs}
        return dce_augmentation(**kwargs).set_random_state(seed=self.seed)

    # --- datasets
    def _dataset(self, split: str) -> SliceDataset:
        if split not in SPLIT_NAMES:
            raise ValueError(f"split={split!r} must be one of {SPLIT_NAMES}")
        if not self._setup_done:
            self.setup()
        return self.datasets_by_split[split]

    @property
    def train_dataset(self) -> SliceDataset:
        """Training slices (augmented when ``augment``)."""
        return self._dataset("train")

    @property
    def val_dataset(self) -> SliceDataset:
        """Validation slices."""
        return self._dataset("val")

    @property
    def test_dataset(self) -> SliceDataset:
        """Test slices."""
        return self._dataset("test")

    def _loader(self, ds: SliceDataset, batch_size: int, train: bool) -> DataLoader:
        """A ``monai.data.DataLoader``: its ``worker_init_fn`` gives each worker's augmentation its own seed.

        The seed of worker ``w`` in an epoch is PyTorch's ``base_seed + w`` (``base_seed`` drawn from the
        loader's seeded generator each epoch), so workers and epochs draw differently and a seed reproduces
        them; without workers the augmentation is seeded once from the same generator and runs on.
        """
        from monai.data import DataLoader as MonaiDataLoader

        gen = torch.Generator().manual_seed(self.seed)
        sampler = None
        if train and self.balanced_sampling:
            labels = np.asarray(ds.labels)
            counts = {c: int((labels == c).sum()) for c in np.unique(labels)}
            weights = torch.as_tensor([1.0 / counts[y] for y in labels], dtype=torch.double)
            sampler = WeightedRandomSampler(weights, num_samples=len(ds), replacement=True, generator=gen)
        return MonaiDataLoader(
            ds,
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            drop_last=train and self.drop_last,
            generator=gen,
            collate_fn=default_collate,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or class-balanced) training loader."""
        ds = self.train_dataset
        if len(ds) == 0:
            raise ValueError(
                f"the training split is empty (split_mode={self.split_mode!r}); use split_mode='kfold' for "
                "cohorts without training patients"
            )
        return self._loader(ds, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation loader (no augmentation, fixed order)."""
        return self._loader(self.val_dataset, self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        """Test loader (no augmentation, fixed order)."""
        return self._loader(self.test_dataset, self.eval_batch_size, train=False)

    def all_dataset(self) -> SliceDataset:
        """Every patient of the cohort (also those without a split), no augmentation, cohort order.

        Cases not yet preprocessed (patients outside the splits) are preprocessed now (through the cache).
        """
        if not self._setup_done:
            self.setup()
        todo = [r for r in self.records if r.pid not in self._arrays_by_pid]
        if todo:
            arrays = prepare_cohort(
                todo, self.cfg, self.cache_dir, self.num_preprocess_workers, self.progress
            )
            self._arrays_by_pid.update({r.pid: a for r, a in zip(todo, arrays, strict=True)})
        arrays = [self._arrays_by_pid[r.pid] for r in self.records]
        with_mask = bool(arrays) and all("masks" in a for a in arrays)
        return self._slice_dataset(self.records, arrays, None, with_mask)

    def all_dataloader(self) -> DataLoader:
        """Loader over every patient of the cohort (for evaluation of external cohorts), fixed order."""
        return self._loader(self.all_dataset(), self.eval_batch_size, train=False)

    def train_labels(self) -> list[int]:
        """Label of every training slice (for class weights)."""
        return self.train_dataset.labels

    def predict_dataloader(self, split: str = "test") -> DataLoader:
        """Loader over a split (``train`` unaugmented, ``val``, ``test`` or ``all``), fixed order."""
        if split == "all":
            return self.all_dataloader()
        ds = self._dataset(split)
        if split == "train" and ds.augment is not None:
            ds = self._slice_dataset(ds.records, self._arrays_of(ds), None, ds.with_mask)
        return self._loader(ds, self.eval_batch_size, train=False)

    @staticmethod
    def _arrays_of(ds: SliceDataset) -> list[dict[str, np.ndarray]]:
        out = []
        for img, sidx, m in zip(ds.images, ds.slice_idx, ds.masks, strict=True):
            d = {"images": img, "slice_idx": sidx}
            if m is not None:
                d["masks"] = m
            out.append(d)
        return out

    def describe(self) -> dict[str, dict[str, int]]:
        """Counts per split: ``{split: {"patients", "pos", "neg", "unknown", "slices"}}``."""
        out: dict[str, dict[str, int]] = {}
        for s in SPLIT_NAMES:
            ds = self._dataset(s)
            labels = [r.label for r in ds.records]
            out[s] = {
                "patients": len(ds.records),
                "pos": sum(y == 1 for y in labels),
                "neg": sum(y == 0 for y in labels),
                "unknown": sum(y is None for y in labels),
                "slices": len(ds),
            }
        return out
