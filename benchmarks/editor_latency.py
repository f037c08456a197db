"""Per-update latency of ``deformgan editor``: from a new target pose to the new image, with the source side
(appearance encoder on the photo and its heatmaps) computed once per photo.

Cases: DSC generators (``warp_skip: mask``) at 128x64, widths 1/8 and 1/4 (the synthetic configs' size, like
the model that will ship) and 1 (the paper's Market model), and at 256x256 width 1 (the paper's DeepFashion
model); 1 and 2 torch threads; the engine's layouts: NCHW fp32, NHWC fp32 (the editor's default) and NHWC
with bf16 previews (``--preview bf16``: the updates while dragging; the release render stays fp32).
Weights are random (Keras-style init): the cost does not depend on their values. The poses are the editor's
standing template with the right wrist dragged along a path, one update per step.

Per case: median and 90th percentile of the update (conditioning + pose encoder + warped skips + decoder),
its stages' medians, the update with the explanatory overlays, the PNG encoding the server adds, and, for
the 128x64 models, the HTTP round trip through the real server (urllib client in the same process). The
machine's 2 cores are shared with other jobs: wall-clock figures are inflated by their load (stated), the
1-thread CPU-time column is not.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/editor_latency.py \
        --out benchmarks/results/editor_latency.md
    .venv/bin/python benchmarks/editor_latency.py --threads 2 --cases 0 3 \
        --out benchmarks/results/editor_latency.md --append "Two threads with OpenMP's default wait policy"

(OpenMP reads ``OMP_WAIT_POLICY`` when torch loads it, so it is set for the whole process. PASSIVE makes
an idle OpenMP thread sleep instead of spinning: on a core shared with other jobs, a spinning thread
steals the time its partner needs.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from machine import machine_description  # noqa: E402  (benchmarks/machine.py)
from PIL import Image

from deformgan.atomic import atomic_write_text
from deformgan.config import config_from_dict
from deformgan.editor.app import png_data_url
from deformgan.editor.engine import EditorEngine
from deformgan.editor.poses import template_pose
from deformgan.keypoints import JOINT
from deformgan.models import build_generator

#: (label, (H, W), width, heatmaps, updates measured)
CASES = [
    ("128x64, width 1/8", (128, 64), 0.125, "gaussian", 40),
    ("128x64, width 1/4", (128, 64), 0.25, "gaussian", 40),
    ("128x64, width 1", (128, 64), 1.0, "reference", 12),
    ("256x256, width 1", (256, 256), 1.0, "reference", 6),
]
LAYOUTS = {"NCHW fp32": (False, "fp32"), "NHWC fp32": (True, "fp32"), "NHWC bf16 preview": (True, "bf16")}
STAGES = ("conditioning", "pose_encoder", "warp_skips", "decoder")
WARMUP = 2


def make_engine(size, width, heatmaps, channels_last, preview) -> EditorEngine:
    preset = "market" if tuple(size) == (128, 64) else "deepfashion"
    config = config_from_dict(
        {
            "name": "latency",
            "generator": {"width": width, "warp_skip": "mask"},
            "conditioning": {"heatmaps": heatmaps},
            "data": {"preset": preset},
        }
    )
    torch.manual_seed(0)
    return EditorEngine(build_generator(config), config, channels_last=channels_last, preview=preview)


def drag_path(size, count: int) -> list[np.ndarray]:
    """The template with the right wrist moved up and out along ``count`` steps (a drag)."""
    height, width = size
    base = template_pose(size)
    poses = []
    for i in range(count):
        kp = base.copy()
        t = i / max(1, count - 1)
        kp[JOINT["Rwri"]] = (
            round(base[JOINT["Rwri"], 0] * (1 - t) + 1 * t),
            round(base[JOINT["Rwri"], 1] * (1 - t)),
        )
        kp[JOINT["Relb"], 0] = max(0, base[JOINT["Relb"], 0] - round(0.05 * width * t))
        poses.append(kp)
    return poses


def photo(size) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)


def p90(values: list[float]) -> float:
    return float(np.percentile(values, 90))


def measure(case, threads: int, layout: str) -> dict:
    label, size, width, heatmaps, count = case
    torch.set_num_threads(threads)
    engine = make_engine(size, width, heatmaps, *LAYOUTS[layout])
    image, source_kp = photo(size), template_pose(size)
    prepare = []
    for _ in range(3):
        start = time.perf_counter()
        source = engine.prepare(image, source_kp)
        prepare.append(1000 * (time.perf_counter() - start))
    poses = drag_path(size, count + WARMUP)
    totals, cpu, stages = [], [], {s: [] for s in STAGES}
    for i, pose in enumerate(poses):
        c0 = time.process_time()
        rendering = engine.render(source, pose, final=False)
        c1 = time.process_time()
        if i < WARMUP:
            continue
        totals.append(rendering.timings["total"])
        cpu.append(1000 * (c1 - c0))
        for s in STAGES:
            stages[s].append(rendering.timings[s])
    overlays = [
        engine.render(source, pose, overlays=True, final=False).timings["total"] for pose in poses[:4]
    ]
    encode = []
    for _ in range(5):
        start = time.perf_counter()
        png_data_url(rendering.image)
        encode.append(1000 * (time.perf_counter() - start))
    return {
        "case": label,
        "threads": threads,
        "layout": layout,
        "prepare": statistics.median(prepare),
        "median": statistics.median(totals),
        "p90": p90(totals),
        "cpu": statistics.median(cpu),
        "stages": {s: statistics.median(v) for s, v in stages.items()},
        "overlays": statistics.median(overlays[1:]),
        "encode": statistics.median(encode),
        "engine": engine,
        "source": source,
    }


def round_trip(engine: EditorEngine, updates: int = 30) -> float | None:
    """Median ms of POST /api/render -> parsed JSON through the real server, or None without the extra."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return None
    from deformgan.editor.app import API_HEADER, bind, create_app, make_server
    from deformgan.editor.session import EditorBackend

    with tempfile.TemporaryDirectory() as work:
        backend = EditorBackend(engine, work, pose_model=Path(work) / "none.tflite")
        sock = bind("127.0.0.1", 0)
        server = make_server(create_app(backend))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        size = engine.image_size
        image = photo(size)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        req = urllib.request.Request(
            f"{url}/api/photo?name=p.png&framing=whole", data=buffer.getvalue(), headers={API_HEADER: "1"}
        )
        loaded = json.loads(urllib.request.urlopen(req).read())
        times = []
        for i, pose in enumerate(drag_path(size, updates + WARMUP)):
            body = json.dumps(
                {
                    "photo": loaded["id"],
                    "source": loaded["keypoints"],
                    "target": pose.tolist(),
                    "final": False,
                }
            ).encode()
            req = urllib.request.Request(
                f"{url}/api/render", data=body, headers={API_HEADER: "1", "content-type": "application/json"}
            )
            start = time.perf_counter()
            json.loads(urllib.request.urlopen(req).read())
            if i >= WARMUP:
                times.append(1000 * (time.perf_counter() - start))
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--cases", type=int, nargs="+", default=list(range(len(CASES))), help="indices of CASES"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown report here")
    parser.add_argument("--append", metavar="TITLE", help="add this run to --out as a section named TITLE")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    rows = []
    for index in args.cases:
        case = CASES[index]
        layouts = list(LAYOUTS) if case[1] == (256, 256) or case[2] == 1.0 else ["NCHW fp32", "NHWC fp32"]
        for threads in args.threads:
            for layout in layouts:
                row = measure(case, threads, layout)
                row["http"] = (
                    round_trip(row["engine"]) if case[1] == (128, 64) and layout == "NHWC fp32" else None
                )
                del row["engine"], row["source"]
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    load_after = os.getloadavg()[0]

    lines = [
        "| model (DSC) | threads | layout | source side, once (ms) | update median (ms) | p90 "
        "| CPU time, 1 thread | conditioning | pose encoder | warped skips | decoder | + overlays "
        "| PNG encode | HTTP round trip |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["stages"]
        cpu = f"{r['cpu']:.0f}" if r["threads"] == 1 else ""
        http = f"{r['http']:.0f}" if r["http"] is not None else ""
        lines.append(
            f"| {r['case']} | {r['threads']} | {r['layout']} | {r['prepare']:.0f} | **{r['median']:.0f}** | "
            f"{r['p90']:.0f} | {cpu} | {s['conditioning']:.1f} | {s['pose_encoder']:.1f} "
            f"| {s['warp_skips']:.1f} | {s['decoder']:.1f} | {r['overlays']:.0f} | {r['encode']:.1f} "
            f"| {http} |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        command = "python benchmarks/editor_latency.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        policy = os.environ.get("OMP_WAIT_POLICY")
        if policy:
            command = f"OMP_WAIT_POLICY={policy} {command}"
        section = (
            f"Command: `{command}`\n\n"
            f"Machine: {machine_description()}, shared with other jobs (load average {load_before:.1f} at "
            f"the start, {load_after:.1f} at the end); bfloat16 instructions: "
            f"{'yes' if torch.ops.mkldnn._is_mkldnn_bf16_supported() else 'no'}; OpenMP wait policy: "
            f"{policy or 'default (waiting threads spin)'}.\n\n"
        )
        if args.append and args.out.is_file():
            text = args.out.read_text().rstrip("\n") + f"\n\n## {args.append}\n\n" + section + table
        else:
            text = "# Editor latency (benchmarks/editor_latency.py)\n\n" + section + table
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
