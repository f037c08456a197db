"""The editor's backend and its HTTP layer on a real local server: uploads validated by the one image reader,
size limit, Host and header guards, renders, pose files and videos. Needs the ``deformgan[editor]`` extra
(Starlette, uvicorn); skipped with the reason when it is absent."""

from __future__ import annotations

import base64
import http.client
import io
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from test_train import make_tiny_dataset, tiny_config

from deformgan.editor.engine import EditorEngine
from deformgan.editor.poses import template_pose
from deformgan.editor.session import EditorBackend
from deformgan.errors import InputError
from deformgan.keypoints import JOINT
from deformgan.train import train

pytestmark = pytest.mark.usefixtures("one_thread")
STATIC = Path(__file__).resolve().parents[1] / "src" / "deformgan" / "editor" / "static"


def require_web_stack() -> None:
    for module in ("starlette", "uvicorn"):
        pytest.importorskip(module, reason=f"{module} absent: install the extra, pip install -e '.[editor]'")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny trained checkpoint (one iteration of tests/test_train.py's 1/16-width model) and its data."""
    root = tmp_path_factory.mktemp("editor")
    data = make_tiny_dataset(root / "data")
    run = train(
        tiny_config(iterations=1, sample_every=0), data, root / "run", progress=False, tensorboard=False
    )
    return run, data


def start_server(backend: EditorBackend, max_upload_mb: float = 8.0):
    """The editor app served by uvicorn on 127.0.0.1 (a free port) in a thread -> (url, stop)."""
    from deformgan.editor.app import bind, create_app, make_server

    sock = bind("127.0.0.1", 0)
    server = make_server(create_app(backend, max_upload_mb))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the editor server did not start"

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


@pytest.fixture(scope="module")
def no_pose_backend(trained_run, tmp_path_factory) -> EditorBackend:
    """A backend whose pose model is missing (an explicit path that does not exist): manual keypoints."""
    run, _ = trained_run
    work = tmp_path_factory.mktemp("work")
    return EditorBackend(
        EditorEngine.from_checkpoint(run), work, pose_model=work / "absent.tflite", name="tiny"
    )


@pytest.fixture(scope="module")
def server(no_pose_backend):
    require_web_stack()
    url, stop = start_server(no_pose_backend)
    yield url
    stop()


def request(url: str, data: bytes | None = None, headers: dict | None = None, api: bool = True):
    """(status, headers, body bytes) of one request; API POSTs carry the editor's header."""
    all_headers = ({"x-deformgan-editor": "1"} if api else {}) | (headers or {})
    req = urllib.request.Request(
        url, data=data, headers=all_headers, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_json(url: str, value: dict):
    status, _, body = request(url, json.dumps(value).encode(), {"content-type": "application/json"})
    return status, json.loads(body)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_missing_pose_model_is_said_and_manual_keypoints_work(no_pose_backend, trained_run):
    assert no_pose_backend.pose_estimator is None
    assert "place the joints by hand" in no_pose_backend.pose_message
    assert "absent.tflite" in no_pose_backend.pose_message
    _, data = trained_run
    photo = next((data / "synth-dataset" / "test").iterdir())
    with pytest.raises(InputError, match="needs the pose model"):
        no_pose_backend.load_photo(photo.read_bytes(), photo.name, "person")
    photo_id, framed = no_pose_backend.load_photo(photo.read_bytes(), photo.name, "whole")
    assert framed.image.shape == (128, 64, 3) and not framed.detected
    assert np.array_equal(framed.keypoints, template_pose((128, 64))) and "standing template" in framed.note
    # A 128x64 crop already is the frame: "whole" keeps its pixels.
    assert np.array_equal(framed.image, np.asarray(Image.open(photo).convert("RGB")))
    rendering = no_pose_backend.render(photo_id, framed.keypoints.tolist(), framed.keypoints.tolist(), False)
    assert rendering.image.shape == (128, 64, 3)


def test_page_and_assets_are_local_only(server):
    status, headers, body = request(server + "/", api=False)
    assert status == 200 and b"/static/editor.js" in body
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    for asset in STATIC.iterdir():  # no CDN, no remote font, no analytics in the page's files
        text = asset.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, asset.name
        status, _, served = request(f"{server}/static/{asset.name}", api=False)
        assert status == 200 and served == asset.read_bytes()
    status, _, body = request(server + "/api/info", api=False)
    info = json.loads(body)
    assert info["size"] == [128, 64] and len(info["joint_names"]) == 18 and info["pose_model"] is False
    for path in ("/docs", "/metrics", "/health", "/openapi.json"):
        assert request(server + path, api=False)[0] == 404


def test_guards(server):
    # A cross-site page cannot add the custom header without a CORS preflight, which is never granted.
    status, _, body = request(server + "/api/render", b"{}", api=False)
    assert status == 403 and b"x-deformgan-editor" in body
    status, headers, _ = request(server + "/api/render", b"{}", {"Origin": "http://evil.example"}, api=False)
    assert status == 403 and "access-control-allow-origin" not in {k.lower() for k in headers}
    # DNS rebinding: a request addressed to another host name is refused.
    status, _, _ = request(server + "/api/info", headers={"Host": "evil.example"}, api=False)
    assert status == 400
    # Upload limit (8 MiB for this server): refused from the declared length, before any body is read.
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/api/photo?name=big.png")
    connection.putheader("x-deformgan-editor", "1")
    connection.putheader("Content-Length", str(8 * 2**20 + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and b"8 MiB limit" in response.read()
    connection.close()


def test_body_without_declared_length_is_capped_while_it_streams():
    """A chunked upload (no Content-Length) stops being read as soon as it passes the limit."""
    import asyncio

    from deformgan.editor.app import read_capped

    read = []

    async def chunks():
        for i in range(100):
            read.append(i)
            yield b"x" * 10

    assert asyncio.run(read_capped(chunks(), 1000)) == b"x" * 1000
    read.clear()
    assert asyncio.run(read_capped(chunks(), 55)) is None
    assert len(read) == 6  # 60 bytes > 55 after the sixth chunk; the other 94 were never pulled


def test_bad_files_get_one_line_naming_them(server):
    status, _, body = request(server + "/api/photo?name=holiday.jpg&framing=whole", b"not an image at all")
    message = json.loads(body)["error"]
    assert status == 400 and message.startswith("holiday.jpg: cannot read image") and "\n" not in message
    assert "/tmp" not in message  # the temporary upload path is not shown
    truncated = png_bytes(np.zeros((128, 64, 3), np.uint8))[:-30]
    status, _, body = request(server + "/api/photo?name=cut.png&framing=whole", truncated)
    assert status == 400 and json.loads(body)["error"].startswith("cut.png:")
    status, _, body = request(server + "/api/photo?name=empty.png&framing=whole", b"")
    assert status == 400 and "empty" in json.loads(body)["error"]
    status, _, body = request(server + "/api/render", b"{not json", {"content-type": "application/json"})
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]


def test_photo_render_and_pose_files_over_http(server, trained_run):
    _, data = trained_run
    photo = sorted((data / "synth-dataset" / "test").iterdir())[0]
    status, _, body = request(f"{server}/api/photo?name={photo.name}&framing=whole", photo.read_bytes())
    loaded = json.loads(body)
    assert status == 200 and decode(loaded["image"]).shape == (128, 64, 3)
    source = loaded["keypoints"]
    target = [list(j) for j in source]
    target[JOINT["Rwri"]] = [target[JOINT["Rwri"]][0] + 6, target[JOINT["Rwri"]][1] - 9]
    status, result = post_json(
        server + "/api/render", {"photo": loaded["id"], "source": source, "target": target, "overlays": True}
    )
    assert status == 200, result
    assert decode(result["image"]).shape == (128, 64, 3)
    assert decode(result["masks"]).shape == (128, 64, 3) and decode(result["warped"]).shape == (128, 64, 3)
    assert len(result["parts"]) == 10 and result["timings"]["total"] > 0
    status, moved = post_json(
        server + "/api/render", {"photo": loaded["id"], "source": source, "target": source}
    )
    assert not np.array_equal(decode(moved["image"]), decode(result["image"]))  # the wrist moved the person
    outside = [list(j) for j in source]
    outside[0] = [64, 0]
    status, bad = post_json(
        server + "/api/render", {"photo": loaded["id"], "source": source, "target": outside}
    )
    assert status == 400 and "joint nose" in bad["error"] and "outside" in bad["error"]
    status, bad = post_json(server + "/api/render", {"photo": "gone", "source": source, "target": source})
    assert status == 400 and "load it again" in bad["error"]

    # Save as OpenPose JSON and as our CSV row, load both back.
    for fmt, suffix in (("openpose", "_keypoints.json"), ("csv", ".csv")):
        status, saved = post_json(
            server + "/api/pose-export", {"keypoints": target, "format": fmt, "name": "me"}
        )
        assert status == 200 and saved["filename"].endswith(suffix)
        status, _, body = request(
            f"{server}/api/pose-import?name={saved['filename']}", saved["text"].encode()
        )
        (pose,) = json.loads(body)["poses"]
        assert status == 200 and pose["keypoints"] == target
    status, bad = post_json(server + "/api/pose-export", {"keypoints": target, "format": "bvh"})
    assert status == 400 and "pose format" in bad["error"]

    # A dataset annotation CSV: every row, by name.
    status, _, body = request(
        f"{server}/api/pose-import?name=a.csv", (data / "synth-annotation-test.csv").read_bytes()
    )
    poses = json.loads(body)["poses"]
    assert status == 200 and len(poses) == 6 and all(len(p["keypoints"]) == 18 for p in poses)
    status, _, body = request(
        f"{server}/api/pose-import?name=b.csv", b"name:keypoints_y:keypoints_x\nx: [1]: [2]\n"
    )
    assert status == 400 and json.loads(body)["error"].startswith("b.csv: row 2")


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_video_without_pose_model(no_pose_backend, tmp_path: Path):
    frames = [np.full((96, 64, 3), 40 * i, np.uint8) for i in range(4)]
    video = write_video(tmp_path / "clip.avi", frames)
    video_id, count, fps = no_pose_backend.load_video(video.read_bytes(), "clip.avi")
    assert count == 4 and fps == pytest.approx(10.0)
    framed = no_pose_backend.video_frame(video_id, 2, "whole")  # no model: the template, said so
    assert framed.image.shape == (128, 64, 3) and "standing template" in framed.note
    with pytest.raises(InputError, match="needs the pose model"):
        no_pose_backend.video_frame(video_id, 2, "person")
    with pytest.raises(InputError, match="cannot read frame 9"):
        no_pose_backend.video_frame(video_id, 9, "whole")
    with pytest.raises(InputError, match="cannot read a frame"):
        no_pose_backend.load_video(b"definitely not a video", "x.mp4")


def test_frame_count_when_the_container_does_not_say():
    from deformgan.editor.session import frame_count

    class Capture:  # a capture whose first frame was read, 4 more to grab, no stated count
        def __init__(self, stated: int):
            self.stated, self.left = stated, 4

        def get(self, prop):
            assert prop == cv2.CAP_PROP_FRAME_COUNT
            return self.stated

        def grab(self):
            self.left -= 1
            return self.left >= 0

    assert frame_count(Capture(-1)) == 5 and frame_count(Capture(0)) == 5
    assert frame_count(Capture(12)) == 12  # a stated count is trusted (seeking checks each frame)


@pytest.fixture(scope="module")
def pose_backend(trained_run, tmp_path_factory) -> EditorBackend:
    run, _ = trained_run
    backend = EditorBackend(EditorEngine.from_checkpoint(run), tmp_path_factory.mktemp("work-pose"))
    if backend.pose_estimator is None:
        pytest.skip(f"pose model not in the weights cache: {backend.pose_message}")
    cv2.setNumThreads(1)
    return backend


def synthetic_photo(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A rendered synthetic person (deformgan.synth, exact keypoints) pasted into a larger grey photo."""
    from deformgan.synth import render_sample

    sample = render_sample(seed, 1, 0, (256, 256))
    photo = np.full((400, 500, 3), 128, np.uint8)
    photo[100:356, 150:406] = sample.image
    truth = np.where(sample.keypoints >= 0, sample.keypoints + (150, 100), -1)
    return photo, truth


def test_photo_and_video_poses_with_the_pose_model(pose_backend, tmp_path: Path):
    photo, truth = synthetic_photo(0)
    photo_id, framed = pose_backend.load_photo(png_bytes(photo), "person.png", "person")
    assert framed.detected and framed.note == "" and framed.image.shape == (128, 64, 3)
    shown = (framed.keypoints >= 0).all(axis=1)
    assert shown[[JOINT["neck"], JOINT["Rhip"], JOINT["Lhip"], JOINT["Rsho"], JOINT["Lsho"]]].all()
    # "whole": the photo fitted into the frame, its keypoints mapped the same way as the pixels.
    whole = pose_backend.photo_pose(png_bytes(photo), "person.png", "whole")
    assert whole.detected
    neck = whole.keypoints[JOINT["neck"]]
    scale = 64 / 500  # the 500-wide photo fills the frame's width
    expected = (truth[JOINT["neck"]] + 0.5) * scale - 0.5 + (0, (128 - 400 * scale) / 2)
    assert np.linalg.norm(neck - expected) < 4  # within 4 frame pixels (BlazePose on a synthetic person)
    video = write_video(tmp_path / "walk.avi", [synthetic_photo(s)[0] for s in (0, 1)])
    video_id, count, _ = pose_backend.load_video(video.read_bytes(), "walk.avi")
    framed_frame = pose_backend.video_frame(video_id, 1, "person")
    assert count == 2 and framed_frame.detected and (framed_frame.keypoints[JOINT["neck"]] >= 0).all()


def test_run_editor_serves_on_loopback_and_prints_the_address(trained_run, tmp_path: Path):
    """What ``deformgan editor`` runs: the address is printed, the page answers, Ctrl-C (SIGINT) stops it."""
    import signal
    import subprocess
    import sys

    require_web_stack()
    run, _ = trained_run
    code = (
        "from deformgan.editor import run_editor; "
        f"run_editor({str(run)!r}, port=0, threads=1, pose_model={str(tmp_path / 'none.tflite')!r})"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("deformgan editor: http://127.0.0.1:"), line + process.stderr.read()
        url = line.split()[2].rstrip("/")
        status, _, body = request(url + "/api/info", api=False)
        assert status == 200 and json.loads(body)["name"] == run.name
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "place the joints by hand" in stderr  # the missing pose model is said once, at the start


def test_start_up_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from deformgan import checkpoint
    from deformgan.editor.app import bind, default_checkpoint, is_loopback

    # With the package's model the editor needs no --checkpoint; without it, the line says what to pass.
    assert (default_checkpoint() / checkpoint.MODEL_FILE).is_file()
    monkeypatch.setattr(checkpoint, "SHIPPED_MODELS_DIR", tmp_path / "no-models")
    with pytest.raises(InputError, match="no shipped model.*pass --checkpoint RUN"):
        default_checkpoint()
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(InputError, match="pass another --port"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("localhost")
        and is_loopback("::1")
        and is_loopback("127.1.2.3")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
