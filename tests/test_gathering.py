"""EvalOutputs: per-slice predictions and the loss gathered over DDP ranks by torchmetrics aggregation."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from her2mri.training.gathering import EvalOutputs, decode_pids, encode_pids

#: what each of two ranks scores: rank 1 has one batch more, rank 2 (in the 3-rank run) none
BATCHES = {
    0: [(["A", "A", "B"], [0, 1, 0], [1, 1, 0], [0.9, 0.7, float("nan")], 0.5, 3)],
    1: [(["B", "Ç-é"], [1, 0], [0, -1], [0.2, 0.4], 0.25, 1), (["D"], [3], [1], [0.6], 1.5, 1)],
    2: [],
}


def _fill(out: EvalOutputs, rank: int) -> None:
    for pids, sidx, labels, probs, loss, n in BATCHES[rank]:
        out.update(pids, torch.tensor(sidx), torch.tensor(labels), torch.tensor(probs, dtype=torch.float32))
        out.update_loss(torch.tensor(loss), n)


def _expected(ranks: list[int]) -> tuple[list[str], list[int], list[int], list[float], float]:
    pids, sidx, labels, probs, loss_sum, n_sum = [], [], [], [], 0.0, 0
    for r in ranks:
        for p, s, lab, q, loss, n in BATCHES[r]:
            pids += p
            sidx += s
            labels += lab
            probs += [float(np.float32(v)) for v in q]
            loss_sum += loss * n
            n_sum += n
    return pids, sidx, labels, probs, loss_sum / n_sum


def _check(got: tuple, ranks: list[int]) -> None:
    pids, sidx, labels, probs, loss = got
    e_pids, e_sidx, e_labels, e_probs, e_loss = _expected(ranks)
    assert pids == e_pids and sidx.tolist() == e_sidx and labels.tolist() == e_labels
    np.testing.assert_array_equal(probs, np.asarray(e_probs))  # NaN kept, in place
    assert sidx.dtype == labels.dtype == np.int64 and probs.dtype == np.float64
    assert loss == pytest.approx(e_loss, rel=1e-15)


def test_pid_stream_round_trip() -> None:
    ids = ["P001", "Ç-é", "", "x" * 300]
    assert decode_pids(encode_pids(ids)) == ids
    assert decode_pids(torch.cat([encode_pids(ids[:2]), encode_pids(ids[2:])])) == ids
    assert decode_pids(torch.zeros(0)) == []
    with pytest.raises(ValueError, match="NUL"):
        encode_pids(["a\x00b"])


def test_one_process_returns_the_steps_values_in_order() -> None:
    out = EvalOutputs()
    _fill(out, 0)
    _fill(out, 1)
    _check(out.compute(), [0, 1])
    out.reset()
    pids, sidx, labels, probs, loss = out.compute()
    assert pids == [] and len(sidx) == len(labels) == len(probs) == 0 and loss is None


def test_unlabelled_stage_has_no_loss() -> None:
    out = EvalOutputs()
    out.update(["A"], torch.tensor([0]), torch.tensor([-1]), torch.tensor([0.3]))
    assert out.compute()[-1] is None
    out.update_loss(torch.tensor(float("nan")), 2)  # a NaN loss stays visible (diverged training)
    assert math.isnan(out.compute()[-1])


def test_outputs_are_not_in_the_state_dict() -> None:
    out = EvalOutputs()
    _fill(out, 1)
    assert out.state_dict() == {}


def _worker(rank: int, world: int, port: int, result_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = EvalOutputs()
        _fill(out, rank)
        got = out.compute()
        torch.save(
            {
                "pids": got[0],
                "sidx": torch.from_numpy(got[1]),
                "labels": torch.from_numpy(got[2]),
                "probs": torch.from_numpy(got[3]),
                "loss": got[4],
            },  # fmt: skip
            Path(result_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("world", [2, pytest.param(3, marks=pytest.mark.slow)])  # 18 s / 28 s, load avg 5
def test_ranks_gather_every_slice_like_one_process(tmp_path: Path, world: int) -> None:
    """2 or 3 gloo processes on the CPU (uneven sizes, a rank without data): every rank gets all slices."""
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    mp.spawn(_worker, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    for rank in range(world):
        r = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        got = (r["pids"], r["sidx"].numpy(), r["labels"].numpy(), r["probs"].numpy(), r["loss"])
        _check(got, list(range(world)))
