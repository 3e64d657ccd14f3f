"""HER2Classifier on a tiny in-memory datamodule: fit, metrics, reload without Hydra, DDP gather."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from her2mri.training.aggregation import aggregate_patients, collect_slices
from her2mri.training.metrics import binary_metrics
from her2mri.training.module import HER2Classifier

SIZE = 32

pytestmark = pytest.mark.usefixtures("one_thread")


class _Slices(Dataset):
    """P patients x S slices; positives have a brighter green channel (an easy planted signal)."""

    def __init__(self, n_pat: int, n_slices: int, views: int, seed: int, offset: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n_pat):
            label = i % 2
            for s in range(n_slices):
                img = torch.rand(3, SIZE, SIZE, generator=g) * 0.5
                img[1] += 0.4 * label
                if views == 3:
                    img = img.unsqueeze(0).repeat(3, 1, 1, 1)
                self.items.append((f"P{offset + i:03d}", s, label, img))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        pid, s, label, img = self.items[i]
        return {"image": img, "label": torch.tensor(label), "pid": pid, "slice_idx": torch.tensor(s)}


class _DM(L.LightningDataModule):
    def __init__(self, views: int = 1, batch_size: int = 4) -> None:
        super().__init__()
        self.train_ds = _Slices(8, 2, views, 0)
        self.val_ds = _Slices(6, 3, views, 1, offset=100)
        self.test_ds = _Slices(6, 3, views, 2, offset=200)
        self.batch_size = batch_size

    def train_labels(self) -> list[int]:
        return [it[2] for it in self.train_ds.items]

    def train_dataloader(self):
        return DataLoader(self.train_ds, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_ds, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.test_ds, batch_size=self.batch_size)


def _trainer(tmp_path, **kw) -> L.Trainer:
    args = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    args.update(kw)
    return L.Trainer(**args)


def _spec(name: str = "resnet34") -> dict:
    return {"name": name, "pretrained": False}


def test_fit_logs_patient_metrics_and_resolves_balanced_weights(tmp_path):
    L.seed_everything(0)
    dm = _DM()
    module = HER2Classifier(_spec(), lr=1e-3)
    trainer = _trainer(tmp_path, max_epochs=2, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    cm = trainer.callback_metrics
    for key in (
        "val/auroc_patient",
        "val/auroc_slice",
        "val/balanced_accuracy_patient",
        "val/auroc_patient_best",
    ):
        assert key in cm, key
    assert module.hparams.class_weights == pytest.approx([1.0, 1.0])  # 8 of 16 training slices positive
    slices, patients = module.predictions["val"]
    assert len(patients) == 6 and len(slices) == 18
    # logged patient AUC equals the AUC recomputed from the stored predictions
    ref = binary_metrics(patients.probs, patients.labels)["auroc"]
    assert float(cm["val/auroc_patient"]) == pytest.approx(ref, abs=1e-6)
    assert float(cm["val/auroc_patient_best"]) >= float(cm["val/auroc_patient"]) - 1e-6


def test_patient_metrics_do_not_depend_on_eval_batch_size(tmp_path):
    L.seed_everything(0)
    module = HER2Classifier(_spec(), class_weights=None)
    module.eval()
    results = []
    for bs in (1, 5):
        dm = _DM(batch_size=bs)
        _trainer(tmp_path).test(module, datamodule=dm, verbose=False)
        results.append(module.predictions["test"][1])
    assert results[0].pids == results[1].pids
    np.testing.assert_allclose(results[0].probs, results[1].probs, atol=1e-6)


def test_load_from_checkpoint_without_hydra(tmp_path):
    L.seed_everything(0)
    dm = _DM(views=3)
    module = HER2Classifier(
        {"name": "thda_resnet34", "pretrained": False},
        aggregation="mean",
        data_spec={"preprocess": {"image_size": SIZE, "views": "adjacent"}},
    )
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert not any(isinstance(v, torch.nn.Module) for v in ckpt["hyper_parameters"].values())
    loaded = HER2Classifier.load_from_checkpoint(path)
    assert loaded.hparams.model["name"] == "thda_resnet34"
    assert loaded.hparams.aggregation == "mean"
    assert loaded.hparams.data_spec["preprocess"]["views"] == "adjacent"
    assert loaded.num_views == 3
    x = torch.rand(2, 3, 3, SIZE, SIZE)
    module.eval()
    loaded.eval()
    torch.testing.assert_close(loaded(x), module(x))
    # loaded without Hydra, the module still builds its default optimizer and schedule
    opt_conf = loaded.configure_optimizers()
    assert isinstance(opt_conf["optimizer"], torch.optim.AdamW)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="aggregation='mode'"):
        HER2Classifier(_spec(), aggregation="mode")
    with pytest.raises(ValueError, match="loss='hinge'"):
        HER2Classifier(_spec(), loss="hinge")
    with pytest.raises(ValueError, match="class_weights='auto'"):
        HER2Classifier(_spec(), class_weights="auto")
    with pytest.raises(ValueError, match="model="):
        HER2Classifier({"pretrained": False})


@pytest.mark.slow
def test_ddp_spawn_two_processes_same_patient_auc(tmp_path):
    """2 CPU processes (gloo) give the same patient predictions as 1 (gathered, padding de-duplicated)."""
    L.seed_everything(0)
    module = HER2Classifier(_spec(), class_weights=None)
    module.eval()

    def dm(bs: int) -> _DM:
        d = _DM(batch_size=bs)
        d.test_ds = _Slices(5, 3, 1, 2, offset=200)  # 15 slices: DistributedSampler pads rank 1 by one
        return d

    single = _trainer(tmp_path)
    single.test(module, datamodule=dm(4), verbose=False)
    ref = single.callback_metrics["test/auroc_patient"]
    ref_n = single.callback_metrics["test/n_slices"]
    multi = _trainer(tmp_path, devices=2, strategy="ddp_spawn")
    multi.test(module, datamodule=dm(3), verbose=False)
    got = multi.callback_metrics["test/auroc_patient"]
    assert float(multi.callback_metrics["test/n_slices"]) == float(ref_n) == 15.0
    assert math.isclose(float(got), float(ref), abs_tol=1e-6)
    # the epoch loss is reduced over both ranks: the 15 slices plus slice 0 again (the sampler's padding)
    per_slice = _per_slice_losses(module, dm(4).test_ds)
    assert float(single.callback_metrics["test/loss"]) == pytest.approx(per_slice.mean().item(), rel=1e-5)
    expected = (per_slice.sum() + per_slice[0]).item() / 16
    assert float(multi.callback_metrics["test/loss"]) == pytest.approx(expected, rel=1e-5)


def _per_slice_losses(module: HER2Classifier, ds: Dataset) -> torch.Tensor:
    x = torch.stack([ds[i]["image"] for i in range(len(ds))])
    y = torch.stack([ds[i]["label"] for i in range(len(ds))])
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(module(x).float(), y, reduction="none").double()


def test_epoch_loss_is_the_slice_weighted_mean_of_batch_losses(tmp_path):
    L.seed_everything(0)
    module = HER2Classifier(_spec(), class_weights=None).eval()
    data = _DM(batch_size=4)  # 18 test slices: batches of 4, 4, 4, 4, 2
    per_slice = _per_slice_losses(module, data.test_ds)
    trainer = _trainer(tmp_path)
    trainer.test(module, datamodule=data, verbose=False)
    assert float(trainer.callback_metrics["test/loss"]) == pytest.approx(per_slice.mean().item(), rel=1e-5)
    # unlabelled slices (label -1) are left out of the loss; a stage with none labelled logs no loss
    for i in range(len(data.test_ds.items)):
        pid, s_, _, img = data.test_ds.items[i]
        data.test_ds.items[i] = (pid, s_, -1, img)
    trainer = _trainer(tmp_path)
    trainer.test(module, datamodule=data, verbose=False)
    assert "test/loss" not in trainer.callback_metrics


def test_gather_deduplicates_sampler_padding():
    # rank 0 and rank 1 each saw half of the slices; rank 1 re-saw the first slice as padding
    pids = ["A", "A", "B", "B", "C"]
    sidx = [0, 1, 0, 1, 0]
    labels = [1, 1, 0, 0, 1]
    probs = [0.9, 0.7, 0.2, 0.4, 0.6]
    rank0 = (pids[:3], sidx[:3], labels[:3], probs[:3])
    rank1 = (pids[3:] + ["A"], sidx[3:] + [0], labels[3:] + [1], probs[3:] + [0.9])
    merged = [sum((list(r[k]) for r in (rank1, rank0)), []) for k in range(4)]
    got = aggregate_patients(collect_slices(*merged))
    ref = aggregate_patients(collect_slices(pids, sidx, labels, probs))
    assert got.pids == ref.pids and got.n_slices.tolist() == [2, 2, 1]
    np.testing.assert_array_equal(got.probs, ref.probs)


@pytest.mark.parametrize("name,views", [("resnet34", 1), ("thda_resnet34", 3)])
def test_channels_last_gives_the_same_logits_and_checkpoint(tmp_path, name, views):
    torch.manual_seed(0)
    ref = HER2Classifier(_spec(name), class_weights=None).eval()
    nhwc = HER2Classifier(_spec(name), class_weights=None, channels_last=True).eval()
    nhwc.load_state_dict(ref.state_dict())
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    shape = (2, 3, SIZE, SIZE) if views == 1 else (2, 3, 3, SIZE, SIZE)
    x = torch.rand(*shape)
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x), ref(x), rtol=1e-4, atol=1e-5)
    # one training step works and the state dict keeps the plain keys
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(nhwc.train(), datamodule=_DM(views=views))
    assert set(nhwc.state_dict()) == set(ref.state_dict())


def test_compile_options_are_checked_and_stored():
    with pytest.raises(ValueError, match="compile_mode='fastest'"):
        HER2Classifier(_spec(), compile=True, compile_mode="fastest")
    module = HER2Classifier(_spec(), compile=True, compile_mode="reduce-overhead")
    assert module.hparams.compile is True and module.hparams.compile_mode == "reduce-overhead"
    assert module._compiled is None  # compiled lazily, on the first forward
    assert not any(k.startswith("_compiled") for k in module.state_dict())


@pytest.mark.slow
def test_compiled_forward_matches_eager_and_keeps_state_dict_keys():
    """torch.compile on the CPU (inductor needs gcc and the Python headers; about a minute)."""
    torch.manual_seed(0)
    eager = HER2Classifier(_spec(), class_weights=None).eval()
    compiled = HER2Classifier(_spec(), class_weights=None, compile=True).eval()
    compiled.load_state_dict(eager.state_dict())
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-4)
    assert compiled._compiled is not None
    assert set(compiled.state_dict()) == set(eager.state_dict())
