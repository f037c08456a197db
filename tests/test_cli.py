"""The console script: commands run end to end; bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deformgan.data import find_layout


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deformgan.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("synth", "pairs", "check-data"):
        assert command in result.stdout


def test_synth_then_check_data(tmp_path):
    out = tmp_path / "people"
    args = ["--identities", "4", "--poses-per-identity", "3", "--seed", "1"]
    result = run_cli("synth", "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    assert (out / "preview.png").is_file()
    layout = find_layout(out)
    assert layout.prefix == "synth"
    check = run_cli("check-data", str(out), "--split", "test")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("ok:")


def test_bad_argument_is_one_line_exit_2(tmp_path):
    result = run_cli("synth", "--out", str(tmp_path / "x"), "--size", "12y")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: size:")
    missing = run_cli("check-data", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "nowhere" in missing.stderr


def test_evaluate_real_triplets_writes_json(shared, tmp_path):
    """`deformgan evaluate --triplets` on the authors' Market strips: the JSON holds every metric key,
    weight-free metrics as numbers and weight-dependent ones as null with the missing file named."""
    import json

    annotations = shared / "data/annotations"
    out = tmp_path / "scores.json"
    result = run_cli(
        "evaluate", "--generated", str(shared / "data/triplets/market"), "--triplets",
        "--annotations", str(annotations / "market-annotation-test.csv"),
        "--annotations", str(annotations / "market-annotation-train.csv"), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads(out.read_text())
    for key in ("ssim", "mask_ssim", "is", "mask_is", "ds", "ds_hog", "lpips", "fid", "l1"):
        assert key in scores
    assert 0 < scores["ssim"]["value"] < scores["mask_ssim"]["value"] < 1
    assert out.with_suffix(".md").is_file()


def test_evaluate_triplets_on_numbered_strips_named_by_a_pairs_file(tmp_path):
    """`evaluate --triplets --pairs` on numbered strips (00000.png ...): the pairs file names them, so
    mask-SSIM is computed, and the scores are the strips' own (SSIM and L1 against their target panel)."""
    import json

    from method_folders import Synthetic, write_folder

    from deformgan.evaluation.scores import score_images, target_masks
    from deformgan.keypoints import write_pairs

    synth = Synthetic(4, seed=6)
    folder = write_folder(
        tmp_path / "numbered", "numbered", synth.pairs, synth.generated, synth.source, synth.target
    )
    pairs = tmp_path / "pairs.csv"
    write_pairs(pairs, synth.pairs)
    out = tmp_path / "scores.json"
    csv = synth.annotations(tmp_path / "a.csv")
    result = run_cli("evaluate", "--generated", str(folder), "--triplets", "--pairs", str(pairs),
                     "--annotations", str(csv), "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "numbered strips without pair names" in result.stderr  # the detected format is said
    scores = json.loads(out.read_text())
    mask = target_masks(synth.pairs, synth.keypoints, (128, 64))
    expected = score_images(synth.generated, synth.target, mask, metrics=("ssim", "mask_ssim", "l1"))
    for key, entry in expected.items():
        assert scores[key]["value"] == entry["value"], key  # JSON keeps a float's shortest repr exactly


def test_train_generate_transfer_from_the_command_line(tmp_path):
    """The researcher's path: synth data -> `train` (tiny override) -> `generate` -> `transfer` (PNG, GIF)."""
    from PIL import Image

    from deformgan.keypoints import read_annotations, read_pairs, write_annotations

    data = tmp_path / "people"
    assert (
        run_cli("synth", "--out", str(data), "--identities", "4", "--poses-per-identity", "3").returncode == 0
    )
    run = tmp_path / "run"
    tiny = [
        "generator.width=0.0625",
        "discriminator.width=0.0625",
        "train.batch_size=2",
        "train.sample_every=0",
    ]
    result = run_cli(
        "train", "--config", "synth-full", "--data", str(data), "--out", str(run), "--iterations", "2", *tiny
    )
    assert result.returncode == 0, result.stderr
    typo = run_cli(
        "train", "--config", "synth-full", "--data", str(data), "--out", str(run), "generator.widht=1"
    )
    assert typo.returncode == 2 and "width" in typo.stderr  # the error lists the valid keys

    pairs = read_pairs(data / "synth-pairs-test.csv")[:3]
    pairs_csv = tmp_path / "pairs.csv"
    pairs_csv.write_text("from,to\n" + "".join(f"{a},{b}\n" for a, b in pairs))
    out = tmp_path / "generated"
    result = run_cli("generate", "--checkpoint", str(run), "--out", str(out), "--pairs", str(pairs_csv))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"{a}_{b}.png" for a, b in pairs)

    source, target = pairs[0]
    image = data / "synth-dataset" / "test" / source
    common = ["--checkpoint", str(run), "--image", str(image)]
    test_csv = str(data / "synth-annotation-test.csv")
    annotations = ["--annotations", test_csv, "--source", source]
    png = tmp_path / "moved.png"
    result = run_cli(
        "transfer", *common, *annotations, "--pose", test_csv, "--row", target, "--out", str(png)
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(png).size == (64, 128) and Image.open(png).format == "PNG"
    jpg = tmp_path / "moved.jpg"
    result = run_cli(
        "transfer", *common, *annotations, "--pose", test_csv, "--row", target, "--out", str(jpg)
    )
    assert result.returncode == 0 and Image.open(jpg).format == "JPEG"  # the format the name asks for
    sequence = tmp_path / "walk.csv"
    walk = read_annotations(data / "synth-annotation-train.csv")
    write_annotations(sequence, {name: walk[name] for name in list(walk)[:4]})
    gif = tmp_path / "walk.gif"
    result = run_cli("transfer", *common, *annotations, "--sequence", str(sequence), "--out", str(gif))
    assert result.returncode == 0, result.stderr
    animation = Image.open(gif)
    assert animation.size == (2 * 2 * 64, 2 * 128)  # [skeleton | generated], enlarged 2x
    durations = []
    for frame in range(animation.n_frames):  # Pillow merges identical consecutive frames, adding durations
        animation.seek(frame)
        durations.append(animation.info["duration"])
    assert sum(durations) == 4 * 100  # 4 poses at the default 10 fps
    wrong = run_cli(
        "transfer", *common, *annotations, "--pose", test_csv, "--row", "nobody.png", "--out", str(png)
    )
    assert wrong.returncode == 2 and "--row: 'nobody.png' is not a row" in wrong.stderr
    for bad_out, message in ((gif, "expected a .png or .jpg or .jpeg file"), (tmp_path, "is a folder")):
        bad = run_cli(
            "transfer", *common, *annotations, "--pose", test_csv, "--row", target, "--out", str(bad_out)
        )
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr


def test_torchrun_two_processes_through_the_cli(tmp_path):
    """The README's multi-GPU command, on 2 CPU processes (gloo): `torchrun -m deformgan.cli train ...`.
    Both ranks train; rank 0 alone writes the run folder and its final checkpoint."""
    import shutil

    from deformgan.checkpoint import list_checkpoints

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None, "torchrun ships with torch and sits beside the interpreter"
    data = tmp_path / "people"
    people = ["--identities", "4", "--poses-per-identity", "3", "--no-preview"]
    synth = run_cli("synth", "--out", str(data), *people)
    assert synth.returncode == 0, synth.stderr
    run = tmp_path / "ddp"
    tiny = [
        "generator.width=0.0625",
        "discriminator.width=0.0625",
        "train.batch_size=2",
        "train.sample_every=0",
    ]
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "deformgan.cli", "train",
         "--config", "synth-dsc", "--data", str(data), "--out", str(run), "--iterations", "2", *tiny],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.name for p in list_checkpoints(run)] == ["ckpt-00000002"]
    rows = (run / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "2"]  # the final step once: one writer


def test_compare_and_failures_from_the_command_line(shared, tmp_path):
    """`deformgan compare` and `deformgan failures` on the authors' real Market strips (10 pairs)."""
    import json
    import shutil

    folder = tmp_path / "defgan"
    folder.mkdir()
    for strip in sorted((shared / "data" / "triplets" / "market").glob("*.png"))[:10]:
        shutil.copy(strip, folder / strip.name)
    csvs = [shared / "data" / "annotations" / f"market-annotation-{s}.csv" for s in ("train", "test")]
    annotations = [arg for csv in csvs for arg in ("--annotations", str(csv))]
    result = run_cli("compare", "--method", f"Def-GAN={folder}", "--method", f"again={folder}", *annotations,
                     "--out", str(tmp_path / "cmp"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(scores["methods"]) == {"Def-GAN", "again"} and (tmp_path / "cmp" / "compare.html").is_file()
    assert "format 'strips'" in result.stderr  # the detected format is said
    bad = run_cli("compare", "--method", "nofolder", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "expected NAME=FOLDER" in bad.stderr
    result = run_cli("failures", "--generated", str(folder), *annotations, "--out", str(tmp_path / "fail"),
                     "--worst", "3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "fail" / "failures.html").is_file()


def test_compare_and_failures_with_a_dataset_folder(tmp_path):
    """`compare --data ROOT` and `failures --data ROOT` on a tiny dataset in the field's layout: plain
    generated images (no panels) are scored against the dataset's targets, and failures measures rarity
    against the dataset's training poses and images."""
    import json

    from method_folders import Synthetic, write_dataset, write_folder

    synth = Synthetic(6, seed=3)
    root = write_dataset(tmp_path / "data", synth, Synthetic(3, seed=4))
    perfect = write_folder(tmp_path / "perfect", "generated", synth.pairs, synth.target)
    noisy = write_folder(tmp_path / "noisy", "generated", synth.pairs, synth.generated)
    result = run_cli("compare", "--method", f"perfect={perfect}", "--method", f"noisy={noisy}",
                     "--data", str(root), "--out", str(tmp_path / "cmp"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "cmp" / "compare.json").read_text())["methods"]
    # The perfect method's images are the dataset's targets: SSIM(x, x) = 1, L1(x, x) = 0.
    assert scores["perfect"]["ssim"]["value"] == 1.0 and scores["perfect"]["l1"]["value"] == 0.0
    assert scores["perfect"]["meta"]["target_source"] == scores["noisy"]["meta"]["target_source"] == "dataset"
    assert 0 < scores["noisy"]["ssim"]["value"] < 1  # Gaussian noise of sigma 20 grey levels
    result = run_cli("failures", "--generated", str(noisy), "--data", str(root),
                     "--out", str(tmp_path / "fail"), "--worst", "2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "fail" / "failures.json").read_text())["meta"]
    assert meta["pose_reference"] == f"training poses: {root / 'synth-annotation-train.csv'}"
    assert meta["appearance_reference"] == f"6 training images of {root / 'synth-dataset' / 'train'}"


def test_reid_commands_from_the_command_line(tmp_path):
    """`deformgan reid train` then `reid evaluate` on a tiny synthetic Re-ID set: the report holds the
    Euclidean, XQDA and KISSME rows; a bad setting is one line."""
    data = tmp_path / "people"
    people = ["--identities", "8", "--poses-per-identity", "4", "--no-preview", "--size", "128x64"]
    assert run_cli("synth", "--out", str(data), *people).returncode == 0
    run = tmp_path / "reid"
    settings = ["backbone=small", "iterations=20", "batch_size=8", "input_size=[64, 32]", "random_init=true"]
    result = run_cli("reid", "train", "--data", str(data), "--out", str(run), *settings)
    assert result.returncode == 0, result.stderr
    result = run_cli("reid", "evaluate", "--run", str(run))
    assert result.returncode == 0, result.stderr
    assert "Rank-1" in result.stdout and (run / "evaluation.json").is_file()
    bad = run_cli("reid", "train", "--data", str(data), "--out", str(tmp_path / "x"), "iteration=3")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown keys iteration" in bad.stderr


@pytest.mark.slow  # 9 CLI processes, 2 Re-ID trainings: about 60 s on 2 loaded cores
def test_reid_augment_train_evaluate_report_from_the_command_line(tmp_path):
    """Table 1's path on tiny synthetic data: `reid augment` with a 1-iteration generator, `reid train`
    on T and on A = T + generated, `reid evaluate --ap official`, and `reid report` collecting both."""
    import csv
    import json

    from deformgan.keypoints import read_annotations
    from deformgan.parts import has_complete_torso
    from deformgan.reid.data import load_reid_dataset, parse_market_name

    data = tmp_path / "people"
    people = ["--identities", "8", "--poses-per-identity", "4", "--no-preview", "--size", "128x64"]
    assert run_cli("synth", "--out", str(data), *people).returncode == 0
    gan = tmp_path / "gan"
    tiny = ["generator.width=0.0625", "discriminator.width=0.0625", "train.batch_size=2"]
    result = run_cli("train", "--config", "synth-full", "--data", str(data), "--out", str(gan),
                     "--iterations", "1", *tiny, "train.sample_every=0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    generated = tmp_path / "generated"
    result = run_cli("reid", "augment", "--checkpoint", str(gan), "--data", str(data), "--out",
                     str(generated), "--per-image", "2", "--batch-size", "8", "--device", "cpu")  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Every training image with a complete torso is a source of 2 images, labelled with its identity and
    # camera (read from its Market-style name); the manifest lists exactly the files written.
    keypoints = read_annotations(data / "synth-annotation-train.csv")
    train = [im for im in load_reid_dataset(data).train if im.identity > 0]
    sources = [im for im in train if has_complete_torso(keypoints[im.path.name])]
    with open(generated / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * len(sources) and len(sources) > 0
    assert sorted(p.name for p in generated.glob("*.png")) == sorted(r["name"] for r in rows)
    for row in rows:
        assert (int(row["identity"]), int(row["camera"])) == parse_market_name(row["source"])
        assert row["name"].startswith(Path(row["source"]).stem) and row["target"] != row["source"]
    assert json.loads((generated / "augment.json").read_text())["complete"]

    settings = ["backbone=small", "iterations=20", "batch_size=8", "input_size=[64, 32]", "random_init=true"]
    runs = {"T": tmp_path / "reid-T", "A": tmp_path / "reid-A"}
    for column, run in runs.items():
        extra = ["--extra", str(generated)] if column == "A" else []
        result = run_cli("reid", "train", "--data", str(data), "--out", str(run), *extra, *settings)
        assert result.returncode == 0, result.stderr
        result = run_cli("reid", "evaluate", "--run", str(run), "--ap", "official", "--device", "cpu")
        assert result.returncode == 0, result.stderr
        report = json.loads((run / "evaluation.json").read_text())
        assert report["ap"] == "official" and report["column"] == column  # A: trained with an extra folder
        for scores in report["results"].values():
            # The headline mAP is the official (trapezoid) one, which never exceeds the standard AP.
            assert scores["mAP"] == scores["mAP_official"] <= scores["mAP_standard"]

    table = tmp_path / "table1.json"
    result = run_cli("reid", "report", str(runs["T"]), str(runs["A"]), "--out", str(table))
    assert result.returncode == 0, result.stderr
    cells = json.loads(table.read_text())["cells"]
    assert set(cells) == {"Euclidean", "XQDA", "KISSME"}  # IDE runs: no DE row
    for column, run in runs.items():
        evaluation = json.loads((run / "evaluation.json").read_text())["results"]
        for row, scores in evaluation.items():
            cell = cells[row][column]
            assert (cell["rank1"], cell["mAP"]) == (scores["rank1"], scores["mAP"])
    assert "| Euclidean |" in result.stdout and table.with_suffix(".md").is_file()
    unevaluated = run_cli("reid", "report", str(gan), "--out", str(tmp_path / "x.json"))
    assert unevaluated.returncode == 2 and "no evaluation JSON" in unevaluated.stderr
