"""Training loop: a few iterations at tiny width, bit-exact resume, sampler, DDP smoke test, bad inputs."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deformgan.checkpoint import list_checkpoints, load_checkpoint
from deformgan.config import Config, config_from_dict, load_config
from deformgan.errors import InputError
from deformgan.keypoints import draw_skeleton, write_annotations, write_pairs
from deformgan.train import LOG_KEYS, ROLES, PairBatchSampler, read_log, train

#: A standing person in a 128x64 frame, (x, y) pixels, joints in the 18-joint order.
STANDING = np.array(
    [(32, 20), (32, 32), (24, 33), (22, 48), (21, 62), (40, 33), (42, 48), (43, 62), (27, 64),
     (27, 85), (27, 106), (37, 64), (37, 85), (37, 106), (34, 18), (30, 18), (36, 19), (28, 19)]
)  # fmt: skip


def make_tiny_dataset(root: Path, identities: int = 2, per_identity: int = 3, seed: int = 0) -> Path:
    """A few 128x64 stick people (jittered standing poses, one background colour per identity) in the
    reference layout with prefix ``synth``: enough to exercise the loop without the synth renderer."""
    rng = np.random.default_rng(seed)
    for split, first_id in (("train", 1), ("test", 101)):
        folder = root / "synth-dataset" / split
        folder.mkdir(parents=True, exist_ok=True)
        annotations, pairs = {}, []
        for person in range(first_id, first_id + identities):
            background = rng.integers(0, 256, 3, dtype=np.uint8)
            names = []
            for frame in range(per_identity):
                kp = STANDING + rng.integers(-3, 4, STANDING.shape)
                skeleton = draw_skeleton(kp, (128, 64), radius=4, thickness=5)
                image = np.where(skeleton.any(-1, keepdims=True), skeleton, background)
                name = f"{person:04d}_c1s1_{frame:06d}_01.png"
                Image.fromarray(image.astype(np.uint8)).save(folder / name)
                annotations[name] = kp
                names.append(name)
            pairs += [(a, b) for a in names for b in names if a != b]
        write_annotations(root / f"synth-annotation-{split}.csv", annotations)
        write_pairs(root / f"synth-pairs-{split}.csv", pairs)
    return root


def tiny_config(**train: object) -> Config:
    """1/16-width Full-like model (mask warp, NN loss on pixels) with dropout on: seconds per run."""
    return config_from_dict(
        {
            "name": "tiny",
            "generator": {"width": 0.0625, "dropout": 0.5},
            "discriminator": {"width": 0.0625},
            "objective": {
                "reconstruction": "nn",
                "features": "pixel",
                "neighborhood": 3,
                "reconstruction_weight": 10.0,
            },
            "data": {"preset": "market", "prefix": "synth"},
            "train": {
                "iterations": 2,
                "batch_size": 2,
                "log_every": 1,
                "sample_every": 2,
                "checkpoint_every": 0,
            }
            | train,
        }
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data"))


def _all_tensors(run: Path) -> dict[str, torch.Tensor]:
    loaded = load_checkpoint(run)
    tensors = {f"G/{k}": v for k, v in loaded.generator.items()}
    tensors |= {f"D/{k}": v for k, v in loaded.discriminator.items()}
    for name, state in loaded.optimizers.items():
        for index, values in state["state"].items():
            tensors |= {f"{name}/{index}/{k}": v for k, v in values.items()}
    return tensors


def test_few_iterations_write_run_folder(dataset: Path, tmp_path: Path):
    run = train(tiny_config(iterations=3, log_every=2), dataset, tmp_path / "run", progress=False)
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000003"]  # always a checkpoint at the end
    assert load_checkpoint(run).step == 3
    assert load_config(run / "config.yaml") == tiny_config(iterations=3, log_every=2)
    log = read_log(run)
    assert log["step"] == [2.0, 3.0]  # every 2 iterations, and at the end
    assert set(log) == {"step", *LOG_KEYS}
    assert all(np.isfinite(v).all() for v in log.values())
    # D's two terms add up to d_loss >= 0; G total = 1 * adv + 10 * rec (the config's weights).
    assert all(r >= 0 and f >= 0 for r, f in zip(log["loss/D/real"], log["loss/D/fake"], strict=True))
    for total, adv, rec in zip(log["loss/G/total"], log["loss/G/adv"], log["loss/G/rec"], strict=True):
        assert total == pytest.approx(adv + 10 * rec, rel=1e-4)
    samples = sorted(p.name for p in (run / "samples").iterdir())
    assert samples == ["step-00000000.png", "step-00000002.png", "step-00000003.png"]
    grid = np.asarray(Image.open(run / "samples" / "step-00000003.png"))
    assert grid.shape == (8 * 128, 4 * 64, 3)  # 8 test pairs (of 12) in rows, 4 panels per row
    assert list((run / "tensorboard").iterdir())


def test_resume_is_bit_exact(dataset: Path, tmp_path: Path):
    """Stopped at 3 and resumed from the step-2 checkpoint to 4 == an uninterrupted 4-iteration run.

    Dropout is on (p = 0.5) and the D/G batches come from the seeded stream, so this checks weights,
    Adam moments, the sampler position and the dropout RNG all at once. It also checks that the log rows
    after the resumed step (row 3 of the interrupted run) are dropped.
    """
    config = tiny_config(iterations=4, checkpoint_every=2, sample_every=0)
    straight = train(config, dataset, tmp_path / "straight", progress=False, tensorboard=False)
    interrupted = train(
        config, dataset, tmp_path / "resumed", iterations=3, progress=False, tensorboard=False
    )
    assert [p.name for p in list_checkpoints(interrupted)] == ["ckpt-00000002", "ckpt-00000003"]
    resumed = train(
        None,
        None,
        interrupted,
        iterations=4,
        resume=interrupted / "ckpt-00000002",
        progress=False,
        tensorboard=False,
    )
    assert resumed == interrupted
    expected, got = _all_tensors(straight), _all_tensors(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    logs = [read_log(run) for run in (resumed, straight)]
    for log in logs:
        del log["time/step"]  # wall time differs
    assert logs[0] == logs[1]


def test_learning_rate_decays_linearly_over_the_last_iterations():
    from deformgan.train.loop import learning_rate

    # 10 iterations, the last 4 decayed: steps 0..5 at lr, then 4/4, 3/4, 2/4, 1/4 of it (never 0: the
    # last update still moves the weights); lr_decay 0 is the authors' constant rate.
    got = [learning_rate(2e-4, 4, step, 10) for step in range(10)]
    assert got[:7] == [2e-4] * 7
    assert got[7:] == pytest.approx([1.5e-4, 1e-4, 0.5e-4])
    assert [learning_rate(2e-4, 0, step, 10) for step in range(10)] == [2e-4] * 10


def test_lr_decay_reaches_the_optimisers_and_resumes_bit_exact(dataset: Path, tmp_path: Path):
    config = tiny_config(iterations=4, checkpoint_every=2, sample_every=0, lr_decay=2)
    straight = train(config, dataset, tmp_path / "straight", progress=False, tensorboard=False)
    for optimizer in load_checkpoint(straight).optimizers.values():
        assert optimizer["param_groups"][0]["lr"] == pytest.approx(1e-4)  # step 3 of 4: (4 - 3) / 2 * lr
    # Interrupted after one iteration (as Ctrl-C or a time budget would), then resumed to the total: the
    # schedule is a function of (step, total), so the resumed run is the straight one.
    train(config, dataset, tmp_path / "resumed", time_budget_s=0.0, progress=False, tensorboard=False)
    resumed = train(None, None, tmp_path / "resumed", resume=tmp_path / "resumed", progress=False)
    expected, got = _all_tensors(straight), _all_tensors(resumed)
    assert all(torch.equal(expected[key], got[key]) for key in expected)


def test_resume_refuses_another_config(dataset: Path, tmp_path: Path):
    run = train(
        tiny_config(iterations=1, sample_every=0),
        dataset,
        tmp_path / "run",
        progress=False,
        tensorboard=False,
    )
    other = tiny_config(iterations=1, sample_every=0).replace(name="other")
    with pytest.raises(InputError, match="trained with another config"):
        train(other, None, None, resume=run, progress=False)


def test_time_budget_stops_early_with_a_checkpoint(dataset: Path, tmp_path: Path):
    run = train(
        tiny_config(iterations=50, sample_every=0),
        dataset,
        tmp_path / "run",
        time_budget_s=0.0,
        progress=False,
    )
    assert load_checkpoint(run).step == 1 and read_log(run)["step"] == [1.0]


def test_sampler_is_a_pure_function_of_seed_and_step():
    sampler = PairBatchSampler(num_pairs=10, batch_size=4, seed=0, start_step=0, end_step=5)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5 * len(ROLES)
    # The stream is one permutation per pass: the first 10 positions cover every pair exactly once.
    stream = [i for b in batches for i in b]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    # Resuming at step 3 continues the same stream; another seed gives another one.
    later = PairBatchSampler(num_pairs=10, batch_size=4, seed=0, start_step=3, end_step=5)
    assert list(later) == batches[3 * len(ROLES) :]
    assert list(PairBatchSampler(10, 4, seed=1, start_step=0, end_step=5)) != batches
    # Two ranks draw disjoint positions of the stream (interleaved batches).
    ranks = [PairBatchSampler(1000, 4, 0, 0, 2, rank=r, world_size=2) for r in range(2)]
    drawn = [set(i for b in s for i in b) for s in ranks]
    assert not drawn[0] & drawn[1]


def test_bad_inputs(dataset: Path, tmp_path: Path):
    with pytest.raises(InputError, match="dataset folder not found"):
        train(tiny_config(), tmp_path / "no-such-data", tmp_path / "run", progress=False)
    with pytest.raises(InputError, match="no dataset folder"):
        train(tiny_config(), None, tmp_path / "run", progress=False)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  iteration: 3\n")
    with pytest.raises(InputError) as error:
        train(typo, dataset, tmp_path / "run", progress=False)
    assert "did you mean 'iterations'" in str(error.value)
    assert "valid keys: iterations, batch_size, lr, betas" in str(error.value)
    with pytest.raises(InputError, match="checkpoint not found"):
        train(None, None, None, resume=tmp_path / "no-such-run", progress=False)
    run = train(
        tiny_config(iterations=2, sample_every=0), dataset, tmp_path / "r", progress=False, tensorboard=False
    )
    with pytest.raises(InputError, match="below the resumed checkpoint's step 2"):
        train(None, None, None, iterations=1, resume=run, progress=False)
    with pytest.raises(InputError, match="no checkpoint in this folder"):
        train(None, None, None, resume=tmp_path, progress=False)


# ----------------------------------------------------------------------------------------------
# DDP: two CPU processes on gloo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, port: int, dataset: str, out: str) -> None:
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
         "MASTER_PORT": str(port)}
    )  # fmt: skip
    torch.set_num_threads(1)
    train(tiny_config(iterations=2, sample_every=0), dataset, out, progress=False, tensorboard=False)


@pytest.mark.slow
def test_ddp_two_cpu_processes(dataset: Path, tmp_path: Path):
    """torchrun-style env, gloo backend, through train(): both ranks train, rank 0 alone writes the run
    folder (one checkpoint, one log row per logged step)."""
    import torch.multiprocessing as mp

    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(_free_port(), str(dataset), str(out)), nprocs=2, join=True)
    assert [p.name for p in list_checkpoints(out)] == ["ckpt-00000002"]
    with (out / "log.csv").open() as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows] == ["step", "1", "2"]  # one writer: no duplicated rows


def _one_iteration(
    config: Config, dataset: str, indices: dict[str, list[int]], rank: int, world: int
) -> dict:
    """One D step and one G step on fixed pairs (this rank's share of each batch) -> the gradients (G's
    from the G step, D's from the D step; after DDP's all-reduce when distributed)."""
    from deformgan.data import PairDataset
    from deformgan.train.distributed import Distributed
    from deformgan.train.loop import discriminator_step, generator_step
    from deformgan.train.setup import build_networks

    pairs = PairDataset(dataset, split="train", preset="market", prefix="synth")
    device = torch.device("cpu")
    nets = build_networks(config, device, Distributed(rank, world, rank), None)
    batches = {}
    for role, chosen in indices.items():
        share = chosen[rank * len(chosen) // world : (rank + 1) * len(chosen) // world]
        batches[role] = torch.utils.data.default_collate([pairs[i] for i in share])
    discriminator_step(nets, config, batches["real"], batches["fake"], device)
    generator_step(nets, config, batches["g"], device)
    grads = {f"G/{k}": p.grad.clone() for k, p in nets.generator.named_parameters()}
    grads |= {f"D/{k}": p.grad.clone() for k, p in nets.discriminator.named_parameters()}
    return grads


def _ddp_step_worker(rank: int, port: int, dataset: str, indices: dict, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        gradients = _one_iteration(_NO_DROPOUT, dataset, indices, rank, 2)
        if rank == 0:
            torch.save(gradients, out)
    finally:
        dist.destroy_process_group()


#: Dropout off: with it, one process and two processes would draw different masks (one RNG stream vs two).
#: A tiny learning rate: Adam's first step moves every weight by about lr whatever the gradient's size, so
#: a float-rounding sign flip of a near-zero D gradient would move D by 2 lr and perturb the G gradients
#: computed after the D step; at lr 1e-10 that perturbation is far below the tolerance.
_NO_DROPOUT = config_from_dict(
    tiny_config().to_dict()
    | {
        "generator": {"width": 0.0625, "dropout": 0.0},
        "train": {**tiny_config().to_dict()["train"], "lr": 1e-10},
    }
)


@pytest.mark.slow
def test_ddp_averages_gradients_like_one_process_on_the_whole_batch(dataset: Path, tmp_path: Path):
    """Two processes on the two halves of a batch compute the gradients one process computes on the whole.

    Every loss is a mean over the batch and the reference instance norm is per sample, so the mean of the
    two half-batch gradients (DDP's all-reduce) is the whole batch's gradient; only the order of float
    additions differs (measured: at most 3e-6 on gradients up to 1.4, hence atol 1e-5). A DDP that summed
    instead of averaging (2x), or did not all-reduce (one half's gradient), is off by O(1).
    """
    import torch.multiprocessing as mp

    indices = {"real": [0, 3, 5, 7], "fake": [1, 2, 8, 9], "g": [4, 6, 10, 11]}
    out = tmp_path / "ddp.pt"
    mp.spawn(_ddp_step_worker, args=(_free_port(), str(dataset), indices, str(out)), nprocs=2, join=True)
    two_processes = torch.load(out)
    one_process = _one_iteration(_NO_DROPOUT, str(dataset), indices, 0, 1)
    assert two_processes.keys() == one_process.keys()
    assert sum(bool(g.abs().max() > 1e-3) for g in one_process.values()) > 20  # not a vacuous comparison
    for key, value in one_process.items():
        torch.testing.assert_close(two_processes[key], value, atol=1e-5, rtol=1e-4, msg=key)
