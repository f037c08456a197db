"""The editor in a real browser (headless Chromium driven by Playwright): load a photo, drag a wrist, the
generated person changes and the saved pose moved by the drag; undo/redo; hide a joint; OpenPose JSON and
CSV round trips; mirror; errors shown in the page; no request leaves localhost.

Needs Debian's ``chromium`` (``apt-get install -y chromium``), ``playwright`` (pip; its own browser
downloads are never used) and the ``deformgan[editor]`` extra; skipped with the reason otherwise.

Run as a script to write the screenshots of ``docs/`` (see :func:`main`).
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_editor_server import (  # noqa: F401
    no_pose_backend,
    png_bytes,
    pose_backend,
    require_web_stack,
    start_server,
    synthetic_photo,
    trained_run,
)

from deformgan.editor.poses import from_openpose_json, mirror_permutation, template_pose
from deformgan.keypoints import JOINT, read_annotations

pytestmark = pytest.mark.usefixtures("one_thread")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DRAG = (6, -9)  # model-frame pixels the right wrist is dragged by
SIZE = (128, 64)


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)


def wait_for(page, expression: str, timeout: float = 30.0):
    """Poll a JavaScript expression until it is truthy. (Playwright's wait_for_function evaluates strings
    with eval, which the page's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = page.evaluate(expression)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {expression}")


def settled(page) -> None:
    wait_for(page, "window.deformganEditor.idle()")


def joint(page, which: str, index: int) -> dict:
    return page.evaluate(f"window.deformganEditor.state.poses.{which}[{index}]")


def output(page) -> str:
    return page.evaluate("window.deformganEditor.state.outputUrl")


def drag(page, which: str, index: int, delta: tuple[int, int], steps: int = 12, pause: float = 0.03) -> float:
    """Press on a joint and move the pointer in steps (a real drag, not a jump), then release -> the
    seconds from press to release."""
    box = page.locator(f"#{which}-canvas").bounding_box()
    scale = page.evaluate("window.deformganEditor.state.scale")
    j = joint(page, which, index)
    x0, y0 = box["x"] + (j["x"] + 0.5) * scale, box["y"] + (j["y"] + 0.5) * scale
    page.mouse.move(x0, y0)
    page.mouse.down()
    start = time.monotonic()
    for step in range(1, steps + 1):
        page.mouse.move(x0 + delta[0] * scale * step / steps, y0 + delta[1] * scale * step / steps)
        time.sleep(pause)
    page.mouse.up()
    return time.monotonic() - start


def saved_pose(page, button: str) -> Path:
    with page.expect_download() as download:
        page.click(button)
    return Path(download.value.path())


@pytest.fixture(scope="module")
def browser():
    require_web_stack()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright absent: pip install playwright")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} absent: apt-get install -y chromium (Debian's package)")
    with sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


def open_editor(browser, backend):
    """A fresh page on a fresh server; every request the page makes is recorded, and any request that
    would leave localhost is aborted (and so fails the tests)."""
    url, stop = start_server(backend)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
    requests: list[str] = []
    timeline: list[tuple[str, str, float]] = []

    def route(r):
        requests.append(r.request.url)
        if r.request.url.startswith(url + "/") or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda r: timeline.append(("start", r.url, time.monotonic())))
    page.on("requestfinished", lambda r: timeline.append(("end", r.url, time.monotonic())))
    page.goto(url + "/")
    wait_for(page, "document.body.dataset.ready === '1'")
    return (page, url, requests, timeline, errors), lambda: (context.close(), stop())


@pytest.fixture
def editor(browser, no_pose_backend):  # noqa: F811
    opened, close = open_editor(browser, no_pose_backend)
    yield opened
    close()


def load_photo(page, path: Path) -> None:
    before = int(page.evaluate("Number(document.body.dataset.renders || 0)"))
    page.set_input_files("#photo-file", str(path))
    wait_for(page, f"Number(document.body.dataset.renders || 0) > {before}")
    settled(page)


def test_drag_undo_redo_and_saved_pose(editor, trained_run, tmp_path: Path):  # noqa: F811
    page, url, requests, timeline, errors = editor
    _, data = trained_run
    photo = sorted((data / "synth-dataset" / "test").iterdir())[0]
    # No pose model on this server: the page says so and frames the whole photo.
    assert "place the joints by hand" in page.inner_text("#message")
    assert page.eval_on_selector("#framing", "el => el.value") == "whole"
    load_photo(page, photo)
    wrist = JOINT["Rwri"]
    start = joint(page, "target", wrist)
    first_image = output(page)
    renders_before = len([t for t in timeline if t[0] == "start" and t[1].endswith("/api/render")])

    seconds = drag(page, "target", wrist, DRAG)
    settled(page)
    moved = joint(page, "target", wrist)
    assert (moved["x"] - start["x"], moved["y"] - start["y"]) == DRAG
    assert output(page) != first_image  # the generated person followed
    # The model was called during the drag (not only at the end), never twice at once, and at most once per
    # 100 ms: a drag of T seconds starts at most floor(T / 0.1) + 1 requests, plus the one on release.
    renders = [t for t in timeline if t[1].endswith("/api/render")]
    started = len([t for t in renders if t[0] == "start"]) - renders_before
    assert 2 <= started <= int(seconds / 0.1) + 2, (started, seconds)
    open_requests, most = 0, 0
    for kind, _, _ in sorted(renders, key=lambda t: t[2]):
        open_requests += 1 if kind == "start" else -1
        most = max(most, open_requests)
    assert most == 1

    # "Download result" saves the generated image shown.
    result = saved_pose(page, "#download")
    assert result.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.asarray(Image.open(result)).shape == (*SIZE, 3)
    assert output(page).endswith(base64.b64encode(result.read_bytes()).decode())

    # The saved pose (OpenPose JSON) has the wrist moved by the drag.
    saved = saved_pose(page, "#save-json")
    (kp,) = from_openpose_json(saved.read_text(), SIZE)
    assert tuple(kp[wrist]) == (start["x"] + DRAG[0], start["y"] + DRAG[1])

    # Undo restores the wrist and the image (the same pose renders the same pixels); redo moves it again.
    assert "move Rwri" in page.get_attribute("#undo", "title")
    page.click("#undo")
    settled(page)
    assert joint(page, "target", wrist) == start and output(page) == first_image
    (kp_undone,) = from_openpose_json(saved_pose(page, "#save-json").read_text(), SIZE)
    assert tuple(kp_undone[wrist]) == (start["x"], start["y"])
    page.keyboard.press("Control+y")
    settled(page)
    assert joint(page, "target", wrist) == moved

    # Hide a joint in the joint list: the saved pose marks it 0, 0, 0 (OpenPose) and -1 (our CSV).
    elbow = JOINT["Lelb"]
    page.uncheck(f"#joint-list input[data-joint='{elbow}']")
    settled(page)
    saved = saved_pose(page, "#save-json")
    triples = json.loads(saved.read_text())["people"][0]["pose_keypoints_2d"]
    assert triples[3 * elbow : 3 * elbow + 3] == [0, 0, 0]
    csv = saved_pose(page, "#save-csv")
    (row,) = read_annotations(csv).values()
    assert tuple(row[elbow]) == (-1, -1) and tuple(row[wrist]) == (moved["x"], moved["y"])

    # Round trip: reset, then load the saved OpenPose JSON: the same pose, hidden joint included.
    saved_kp = from_openpose_json(saved.read_text(), SIZE)[0]
    page.click("#reset")
    settled(page)
    assert joint(page, "target", elbow)["shown"]
    json_copy = tmp_path / "pose_keypoints.json"
    shutil.copy(saved, json_copy)
    page.set_input_files("#pose-file", str(json_copy))
    settled(page)
    wait_for(page, f"!window.deformganEditor.state.poses.target[{elbow}].shown")
    pose = page.evaluate("window.deformganEditor.state.poses.target")
    loaded = np.array([[j["x"], j["y"]] if j["shown"] else [-1, -1] for j in pose])
    assert np.array_equal(loaded, saved_kp)

    # Mirror: x -> W - 1 - x with left and right swapped; undo brings the pose back.
    page.click("#mirror")
    settled(page)
    mirrored = page.evaluate("window.deformganEditor.state.poses.target")
    perm = mirror_permutation()
    for i, j in enumerate(mirrored):
        twin = saved_kp[perm[i]]
        assert (j["shown"], j["x"] if j["shown"] else -1) == (
            (twin >= 0).all(),
            63 - twin[0] if twin[0] >= 0 else -1,
        )
    page.click("#undo")
    settled(page)

    assert not errors, errors
    assert requests and all(r.startswith(url + "/") or r.startswith(("data:", "blob:")) for r in requests), (
        requests
    )


def test_source_keypoints_and_errors_in_the_page(editor, trained_run, tmp_path: Path):  # noqa: F811
    page, url, requests, _, errors = editor
    _, data = trained_run
    load_photo(page, sorted((data / "synth-dataset" / "test").iterdir())[1])
    image = output(page)
    # Correcting a source keypoint recomputes the source side: the output changes, the target does not.
    target = page.evaluate("JSON.stringify(window.deformganEditor.state.poses.target)")
    drag(page, "source", JOINT["Lsho"], (3, 4), steps=6)
    settled(page)
    assert page.evaluate("window.deformganEditor.state.edit") == "source"
    assert page.evaluate("JSON.stringify(window.deformganEditor.state.poses.target)") == target
    assert output(page) != image
    # A pose from a dataset annotation CSV: the file's rows are offered by name.
    page.check("input[name='edit'][value='target']")
    page.set_input_files("#pose-file", str(data / "synth-annotation-test.csv"))
    wait_for(page, "document.querySelectorAll('#picker-list option').length === 7")
    name = page.evaluate("document.querySelectorAll('#picker-list option')[2].textContent")
    page.select_option("#picker-list", index=2)
    settled(page)
    expected = read_annotations(data / "synth-annotation-test.csv")[name]
    pose = page.evaluate("window.deformganEditor.state.poses.target")
    assert [[j["x"], j["y"]] for j in pose] == expected.tolist()
    # A bad photo: one line in the page, naming the file.
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a JPEG")
    page.set_input_files("#photo-file", str(bad))
    wait_for(page, "document.querySelector('#message').classList.contains('error')")
    assert page.inner_text("#message").startswith("holiday.jpg: cannot read image")
    assert not errors, errors
    assert all(r.startswith(url + "/") or r.startswith(("data:", "blob:")) for r in requests), requests


def test_photo_keypoints_found_automatically(browser, pose_backend, tmp_path: Path):  # noqa: F811
    """With the pose model: the person is found and framed, the keypoints shown are the model's."""
    (page, url, requests, _, errors), close = open_editor(browser, pose_backend)
    try:
        assert page.is_hidden("#message") and page.eval_on_selector("#framing", "el => el.value") == "person"
        photo, _ = synthetic_photo(0)
        path = tmp_path / "someone.png"
        path.write_bytes(png_bytes(photo))
        load_photo(page, path)
        pose = page.evaluate("window.deformganEditor.state.poses.source")
        found = np.array([[j["x"], j["y"]] if j["shown"] else [-1, -1] for j in pose])
        assert (found[[JOINT["neck"], JOINT["Rhip"], JOINT["Lhip"]]] >= 0).all()
        assert not np.array_equal(found, template_pose(SIZE))
        assert page.evaluate("JSON.stringify(window.deformganEditor.state.poses.target)") == page.evaluate(
            "JSON.stringify(window.deformganEditor.state.poses.source)"
        )  # the target starts from the source pose
        assert not errors, errors
        assert all(r.startswith(url + "/") or r.startswith(("data:", "blob:")) for r in requests), requests
    finally:
        close()


# ---------------------------------------------------------------------------------------------------
# Screenshots for docs/ (not a test)


def main() -> None:
    """Write docs/editor.png (the page) and docs/editor-panes.png (its panes, skeleton off) from a trained
    run and a photo, after dragging joints of the target pose:

        .venv/bin/python tests/test_editor_browser.py --checkpoint RUN --photo PHOTO [--annotations CSV]
            [--row NAME] [--target-row NAME] [--drag Rwri:10,-22 ...] [--out docs]

    With --annotations, the source keypoints are the photo's row of that CSV (--row, default the photo's
    file name) and the target pose another row (--target-row); otherwise the pose model's.
    """
    import argparse
    import tempfile

    from playwright.sync_api import sync_playwright

    from deformgan.editor.engine import EditorEngine
    from deformgan.editor.session import EditorBackend

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--photo", type=Path, required=True)
    parser.add_argument("--annotations", type=Path)
    parser.add_argument("--row")
    parser.add_argument("--target-row")
    parser.add_argument("--framing", default="whole")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument(
        "--drag", action="append", default=[], metavar="JOINT:DX,DY", help="e.g. Rwri:10,-22 (repeatable)"
    )
    args = parser.parse_args()
    args.drags = [(d.split(":")[0], tuple(int(v) for v in d.split(":")[1].split(","))) for d in args.drag]
    with tempfile.TemporaryDirectory() as work:
        backend = EditorBackend(
            EditorEngine.from_checkpoint(args.checkpoint), work, name=args.checkpoint.name
        )
        url, stop = start_server(backend, 64)
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_page(viewport={"width": 1440, "height": 1010})
            page.goto(url + "/")
            wait_for(page, "document.body.dataset.ready === '1'")
            page.select_option("#framing", args.framing)
            load_photo(page, args.photo)
            if args.annotations:
                rows = read_annotations(args.annotations)
                names = list(rows)
                page.check("input[name='edit'][value='source']")
                page.set_input_files("#pose-file", str(args.annotations))
                wait_for(page, "document.querySelectorAll('#picker-list option').length > 1")
                page.fill("#picker-filter", args.row or args.photo.name)
                page.dispatch_event("#picker-filter", "input")
                page.select_option("#picker-list", index=1)
                settled(page)
                page.check("input[name='edit'][value='target']")
                page.click("#from-source")  # target = source (then, optionally, another row)
                settled(page)
                if args.target_row:
                    assert args.target_row in names, args.target_row
                    page.fill("#picker-filter", args.target_row)
                    page.dispatch_event("#picker-filter", "input")
                    page.select_option("#picker-list", index=1)
                    settled(page)
            for name, delta in args.drags:
                drag(page, "target", JOINT[name], delta, steps=15)
                settled(page)
            time.sleep(0.3)
            args.out.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out / "editor.png"), full_page=True)
            page.uncheck("#skeleton")  # the same panes without the skeleton over the generated person
            time.sleep(0.2)
            page.locator(".panes").screenshot(path=str(args.out / "editor-panes.png"))
            browser.close()
        stop()
    print(f"wrote {args.out / 'editor.png'} and {args.out / 'editor-panes.png'}")


if __name__ == "__main__":
    main()
