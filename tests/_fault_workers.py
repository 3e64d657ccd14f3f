"""Child processes for tests/test_faults.py: each is killed (SIGKILL) or starved of disk by the test.

Run as ``python tests/_fault_workers.py MODE ARGS...``; prints ``READY`` when the interesting part starts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def save_loop(folder: str, n_mb: str) -> None:
    """Save checkpoints of ``n_mb`` MiB over ``last.ckpt`` forever (killed by the test)."""
    import torch

    from her2mri.training.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = Path(folder) / "last.ckpt"
    n = int(float(n_mb) * 2**20 / 4)
    i = 0
    print("READY", flush=True)
    while True:
        i += 1
        io.save_checkpoint({"step": i, "w": torch.full((n,), float(i))}, path)


def prepare(root: str, csv: str, cache_dir: str) -> None:
    """Preprocess the cohort into ``cache_dir`` (killed by the test, then run again to completion)."""
    from her2mri.data.prepare import prepare_cohort
    from her2mri.data.preprocess_config import PreprocessConfig
    from her2mri.data.readers import load_breastdcedl

    records = load_breastdcedl(Path(root), Path(csv))
    cfg = PreprocessConfig(image_size=32, crop_size=32.0, n_slices=2)
    print("READY", flush=True)
    prepare_cohort(records, cfg, Path(cache_dir), 0, False, return_arrays=False)


def full_disk(mount: str) -> None:
    """Inside a private tmpfs of a few hundred KiB (``unshare -rm``): fill it through each her2mri writer."""
    import errno

    import numpy as np
    import torch

    from her2mri.data.cache import atomic_save_npz
    from her2mri.runs.outputs import write_metrics_json
    from her2mri.training.checkpoint_io import AtomicCheckpointIO, read_checkpoint

    root = Path(mount)
    result: dict[str, dict[str, object]] = {}

    def attempt(name: str, fn, target: Path, before: bytes | None) -> None:
        try:
            fn()
            outcome = "written"
        except OSError as err:
            outcome = "ENOSPC" if err.errno in (errno.ENOSPC, errno.EDQUOT) else f"OSError {err.errno}"
            result.setdefault(name, {})["message"] = str(err)
        files = sorted(p.name for p in target.parent.iterdir())
        intact = before is None or (target.is_file() and target.read_bytes() == before)
        result.setdefault(name, {}).update({"outcome": outcome, "files": files, "previous_intact": intact})

    # checkpoints: a good small last.ckpt, then a save too large for the disk
    ck = root / "checkpoints"
    ck.mkdir()
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.ones(1000)}, ck / "last.ckpt")
    before = (ck / "last.ckpt").read_bytes()
    attempt(
        "checkpoint",
        lambda: io.save_checkpoint({"w": torch.ones(2**20)}, ck / "last.ckpt"),
        ck / "last.ckpt",
        before,
    )
    result["checkpoint"]["reloaded"] = bool(
        torch.equal(read_checkpoint(ck / "last.ckpt")["w"], torch.ones(1000))
    )

    # cache: a good entry, then entries until the disk is full
    cache = root / "cache"
    cache.mkdir()
    good = cache / "p0.npz"
    atomic_save_npz(good, {"images": np.ones((2, 3, 32, 32), np.uint8)})
    before = good.read_bytes()

    def fill_cache() -> None:
        for i in range(1, 10_000):
            atomic_save_npz(cache / f"p{i}.npz", {"images": np.random.default_rng(i).random((1, 3, 32, 32))})

    attempt("cache", fill_cache, good, before)
    complete = 0
    for p in cache.glob("*.npz"):
        with np.load(p) as z:
            complete += int("images" in z.files)
    result["cache"]["complete_entries"] = complete
    result["cache"]["npz_files"] = len(list(cache.glob("*.npz")))

    # outputs: metrics.json written once, then rewritten on a full disk
    out = root / "run"
    write_metrics_json(out / "metrics.json", {"val/auroc_patient": 0.5}, {}, status="ok")
    before = (out / "metrics.json").read_bytes()
    filler = root / "filler"
    try:
        with open(filler, "wb") as fh:
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
    except OSError:
        pass
    big = {f"m{i}": float(i) for i in range(5000)}
    attempt(
        "metrics",
        lambda: write_metrics_json(out / "metrics.json", big, {}, status="ok"),
        out / "metrics.json",
        before,
    )
    result["metrics"]["json_ok"] = json.loads((out / "metrics.json").read_text())["status"] == "ok"
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"save_loop": save_loop, "prepare": prepare, "full_disk": full_disk}[mode](*args)
