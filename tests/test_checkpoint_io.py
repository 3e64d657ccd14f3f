"""Safe, self-contained, atomic checkpoints (issue 13 items 2-4, 9): her2mri.training.checkpoint_io.

A planted pickle whose unpickling writes a marker file is offered in every place her2mri reads a file
(checkpoint, trainer resume, weights_path, a spec that names one, the radiomics DLR checkpoint); the marker
must never appear.
"""

from __future__ import annotations

import builtins
import errno
import os
import warnings
from pathlib import Path

import pytest
import torch

from her2mri.data.errors import DataError
from her2mri.io_utils import atomic_write_text, clean_stale_temps
from her2mri.training.checkpoint_io import (
    AtomicCheckpointIO,
    is_readable_checkpoint,
    read_checkpoint,
    resolve_resume_checkpoint,
    strip_model_spec,
)
from her2mri.training.module import HER2Classifier, load_classifier

TINY = {"name": "vit_small", "img_size": 32, "depth": 1, "embed_dim": 32, "num_heads": 2, "pretrained": False}
DATA_SPEC = {"preprocess": {"image_size": 32, "n_slices": 3}, "data": {"imagenet_norm": True}}


class _Planted:
    """Unpickling it runs ``exec`` that creates the marker file (what a hostile checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _module(**kw) -> HER2Classifier:
    torch.manual_seed(0)
    return HER2Classifier(dict(TINY), data_spec=DATA_SPEC, class_weights=None, **kw)


def _checkpoint(module: HER2Classifier, **extra) -> dict:
    ckpt = {
        "epoch": 0,
        "global_step": 1,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
    }
    ckpt.update(extra)
    return ckpt


@pytest.fixture()
def marker(tmp_path) -> Path:
    return tmp_path / "PWNED"


@pytest.fixture()
def evil_ckpt(tmp_path, marker) -> Path:
    ckpt = _checkpoint(_module())
    ckpt["hyper_parameters"]["evil"] = _Planted(marker)
    path = tmp_path / "evil.ckpt"
    torch.save(ckpt, path)
    assert not marker.exists()
    return path


@pytest.fixture()
def evil_weights(tmp_path, marker) -> Path:
    path = tmp_path / "evil_weights.pt"
    torch.save({"state_dict": _module().model.state_dict(), "x": _Planted(marker)}, path)
    return path


def test_planted_pickle_really_runs_when_unpickled(evil_ckpt, marker):
    """The probe works: full unpickling of the planted file does create the marker."""
    torch.load(evil_ckpt, map_location="cpu", weights_only=False)
    assert marker.exists()


def test_checkpoint_loaders_never_run_planted_pickle(evil_ckpt, marker):
    for load in (
        lambda: load_classifier(evil_ckpt),
        lambda: HER2Classifier.load_from_checkpoint(str(evil_ckpt)),
        lambda: read_checkpoint(evil_ckpt),
        lambda: AtomicCheckpointIO().load_checkpoint(evil_ckpt),
        lambda: resolve_resume_checkpoint(str(evil_ckpt), evil_ckpt.parent),
    ):
        with pytest.raises(DataError, match="refused to load"):
            load()
    assert not marker.exists()


def test_unsafe_loads_are_refused_not_downgraded(evil_ckpt):
    with pytest.raises(ValueError, match="weights_only=False"):
        AtomicCheckpointIO().load_checkpoint(evil_ckpt, weights_only=False)
    with pytest.raises(ValueError, match="weights_only=False"):
        HER2Classifier.load_from_checkpoint(str(evil_ckpt), weights_only=False)


def test_weights_path_never_runs_planted_pickle(evil_weights, marker):
    from her2mri.models import create_model

    with pytest.raises(ValueError, match="refused to load"):
        create_model("vit_small", **{k: v for k, v in TINY.items() if k != "name"}, weights_path=evil_weights)
    assert not marker.exists()


def test_spec_naming_weights_path_is_not_opened(tmp_path, evil_weights, marker):
    """A safe checkpoint whose stored spec names a hostile weights_path: the file is never opened."""
    module = _module()
    ckpt = _checkpoint(module)
    ckpt["hyper_parameters"]["model"] = {**TINY, "weights_path": str(evil_weights)}
    path = tmp_path / "spec_points_out.ckpt"
    torch.save(ckpt, path)
    loaded = load_classifier(path)
    assert not marker.exists()
    assert "weights_path" not in loaded.hparams.model
    for a, b in zip(module.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    HER2Classifier.load_from_checkpoint(str(path))
    assert not marker.exists()


def test_radiomics_dlr_checkpoint_never_runs_planted_pickle(evil_ckpt, marker):
    from her2mri.radiomics.dlr import load_backbone

    with pytest.raises(ValueError, match="refused to load"):
        load_backbone(
            "vit_small", checkpoint=evil_ckpt, model_kwargs={k: v for k, v in TINY.items() if k != "name"}
        )
    assert not marker.exists()


def test_checkpoint_is_self_contained(tmp_path, monkeypatch):
    """pretrained=true / a local weights_path of the training machine: loading needs neither (offline)."""
    module = _module()
    ckpt = _checkpoint(module)
    ckpt["hyper_parameters"]["model"] = {**TINY, "pretrained": True, "weights_path": "/nowhere/imagenet.pt"}
    path = tmp_path / "pretrained.ckpt"
    torch.save(ckpt, path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_classifier(path)
    assert loaded.hparams.model["pretrained"] is False and "weights_path" not in loaded.hparams.model
    assert not loaded.training
    assert loaded.hparams.data_spec == DATA_SPEC
    x = torch.randn(2, 3, 32, 32)
    module.eval()
    assert torch.allclose(module(x), loaded(x))


def test_strip_model_spec():
    spec = {"name": "resnet34", "pretrained": True, "weights_path": "/w.pt", "drop_rate": 0.1}
    assert strip_model_spec(spec) == {"name": "resnet34", "pretrained": False, "drop_rate": 0.1}
    assert strip_model_spec({"name": "x"}) == {"name": "x"}


def test_her2mri_metadata_round_trip(tmp_path):
    """checkpoint["her2mri"] (threshold, model card id) survives on_save_checkpoint and load_classifier."""
    module = _module()
    module.her2mri_metadata = {"threshold": 0.37, "model_card": "card-1"}
    ckpt = _checkpoint(module)
    module.on_save_checkpoint(ckpt)
    path = tmp_path / "meta.ckpt"
    torch.save(ckpt, path)
    assert load_classifier(path).her2mri_metadata == {"threshold": 0.37, "model_card": "card-1"}


def test_plain_state_dict_is_a_clear_error(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save(_module().state_dict(), path)
    with pytest.raises(DataError, match="plain state dict"):
        load_classifier(path)
    with pytest.raises(DataError, match="plain state dict"):
        resolve_resume_checkpoint(str(path), tmp_path)


def test_empty_and_truncated_checkpoints_are_named(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_checkpoint(empty)
    good = tmp_path / "good.ckpt"
    torch.save(_checkpoint(_module()), good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut\.ckpt.*truncated or corrupt"):
        read_checkpoint(cut)
    assert (
        is_readable_checkpoint(good) and not is_readable_checkpoint(cut) and not is_readable_checkpoint(empty)
    )


def test_ckpt_path_last_falls_back_to_newest_readable(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    older = folder / "epoch_000.ckpt"
    torch.save(_checkpoint(_module()), older)
    last = folder / "last.ckpt"
    last.write_bytes(b"")  # a kill during the save of a non-atomic writer
    with pytest.warns(UserWarning, match=r"last\.ckpt unreadable.*epoch_000\.ckpt"):
        assert resolve_resume_checkpoint("last", folder) == str(older)
    older.write_bytes(older.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="no readable checkpoint"):
        assert resolve_resume_checkpoint("last", folder) is None
    with pytest.warns(UserWarning, match="no checkpoint"):
        assert resolve_resume_checkpoint("last", tmp_path / "absent") is None
    assert resolve_resume_checkpoint(None, folder) is None
    with pytest.raises(FileNotFoundError):
        resolve_resume_checkpoint(str(tmp_path / "nope.ckpt"), folder)


def test_atomic_save_keeps_previous_checkpoint_when_the_write_fails(tmp_path, monkeypatch):
    """A full disk (or a kill) in the middle of a save: the previous file is intact, no temp file remains."""
    io = AtomicCheckpointIO()
    path = tmp_path / "ck" / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(3)}, path)
    before = path.read_bytes()

    real_save = torch.save

    def full_disk(obj, fh, *a, **k):
        real_save(obj, fh, *a, **k)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="disk holding .* is full"):
        io.save_checkpoint({"a": torch.zeros(1000)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    assert torch.equal(io.load_checkpoint(path)["a"], torch.ones(3))


def test_atomic_save_writes_in_the_destination_folder(tmp_path, monkeypatch):
    """No TMPDIR involved: a TMPDIR that cannot be written does not matter."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "does-not-exist"))
    seen: list[Path] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(Path(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    AtomicCheckpointIO().save_checkpoint({"a": torch.ones(1)}, tmp_path / "d" / "x.ckpt")
    assert seen and seen[0].parent == tmp_path / "d"


def test_clean_stale_temps_removes_only_dead_writers(tmp_path):
    dead = tmp_path / ".last.ckpt.999999999.deadbeef.her2mri-tmp"
    alive = tmp_path / f".last.ckpt.{os.getpid()}.cafebabe.her2mri-tmp"
    user = tmp_path / "notes.tmp"
    for p in (dead, alive, user):
        p.write_text("x")
    assert clean_stale_temps(tmp_path) == [dead]
    assert alive.exists() and user.exists() and not dead.exists()


def test_atomic_write_text(tmp_path):
    p = atomic_write_text(tmp_path / "a" / "m.json", "{}\n")
    assert p.read_text() == "{}\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        atomic_write_text(p, "x")
    assert p.read_text() == "x" and len(list(p.parent.iterdir())) == 1


def test_export_round_trip_is_self_contained_and_redacted(tmp_path, capsys):
    import json

    from her2mri.cli.export import main as export_main

    module = _module()
    module.hparams.data_spec = {**DATA_SPEC, "data": {"root": "/secret/site/Jane_Doe", "imagenet_norm": True}}
    module.her2mri_metadata = {"threshold": 0.42, "model_card": "card-7"}
    ckpt = _checkpoint(module)
    module.on_save_checkpoint(ckpt)
    ckpt["hyper_parameters"]["model"] = {**TINY, "pretrained": True, "weights_path": "/nowhere/w.pt"}
    src = tmp_path / "best.ckpt"
    torch.save(ckpt, src)
    out = tmp_path / "export"
    assert export_main([str(src), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "spec.json"]
    spec = json.loads((out / "spec.json").read_text())
    assert spec["format"] == "her2mri-export" and spec["threshold"] == 0.42
    assert spec["her2mri"] == {"threshold": 0.42, "model_card": "card-7"}
    assert spec["data_spec"]["preprocess"] == DATA_SPEC["preprocess"]
    assert spec["data_spec"]["data"]["root"] == "<redacted>"
    assert "Jane_Doe" not in (out / "spec.json").read_text() and str(tmp_path) not in json.dumps(spec)
    assert "weights_path" not in spec["model"] and spec["model"]["pretrained"] is False

    loaded = load_classifier(out)
    assert not loaded.training and loaded.her2mri_metadata["threshold"] == 0.42
    assert loaded.hparams.data_spec["preprocess"] == DATA_SPEC["preprocess"]
    x = torch.randn(2, 3, 32, 32)
    module.eval()
    assert torch.allclose(module(x), loaded(x))

    assert export_main([str(src), str(out)]) == 2  # exists: needs --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert export_main([str(src), str(out), "--overwrite", "--keep-paths"]) == 0
    assert json.loads((out / "spec.json").read_text())["data_spec"]["data"]["root"] == "/secret/site/Jane_Doe"
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    assert export_main([str(src), str(user)]) == 2
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
