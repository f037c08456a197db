"""The comparison and failure pages in a real browser (headless Chromium through Playwright).

Needs Debian's ``chromium`` package (``apt-get install -y chromium``) and ``pip install playwright`` (no
browser download: Playwright drives the system Chromium). Skips with the reason when either is absent.

``DEFORMGAN_DOCS_SCREENSHOTS=1 pytest tests/test_report_browser.py -k screenshots`` re-renders
docs/compare-screenshot.png and docs/failures-screenshot.png from the real triplets in ../shared.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from method_folders import Synthetic, write_folder

from deformgan.evaluation.compare import compare_methods
from deformgan.evaluation.failures import find_failures

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run",
]  # fmt: skip
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright not installed (pip install playwright; no browser download)"
    )
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


def _open(browser, path: Path, width: int = 1400, height: int = 1000):
    """Open a report page; every request that is not a local file is aborted and recorded."""
    page = browser.new_page(viewport={"width": width, "height": height})
    outside, errors = [], []

    def route(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    return page, outside, errors


def _column(page, key: str) -> list[float]:
    return [
        float(v)
        for v in page.eval_on_selector_all(
            f'td[data-key="{key}"]', "cells => cells.map(c => c.dataset.value)"
        )
    ]


def _images_loaded(page) -> bool:
    return page.evaluate(
        "Array.from(document.querySelectorAll('#pairs img')).every(i => i.complete && i.naturalWidth > 0)"
    )


@pytest.fixture(scope="module")
def compare_page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    synth = Synthetic(60, seed=7)
    noisy = write_folder(tmp / "noisy", "strips", synth.pairs, synth.generated, synth.source, synth.target)
    copy = write_folder(tmp / "copy", "generated", synth.pairs, synth.source)
    result = compare_methods(
        {"noisy": noisy, "copy source": copy}, annotations=synth.annotations(tmp / "a.csv"), out=tmp / "out",
        metrics=("ssim", "mask_ssim", "l1"), max_pages=1,
    )  # fmt: skip
    page = (tmp / "out" / "compare.html").read_text()
    rows = json.loads(re.search(r'<script type="application/json" id="rows">(.*?)</script>', page).group(1))
    return tmp / "out" / "compare.html", rows, result


def test_compare_page_loads_with_its_images_and_no_network(browser, compare_page):
    path, rows, _ = compare_page
    page, outside, errors = _open(browser, path)
    assert page.title() == "Comparison of noisy, copy source"
    assert page.inner_text("#status") == "60 of 60 rows; page 1 of 2"
    assert page.locator("#pairs tbody tr").count() == 50
    assert page.locator("#pairs img").count() == 50 and _images_loaded(page)
    assert outside == [] and errors == []
    page.click("#next")
    assert page.locator("#pairs tbody tr").count() == 10 and _images_loaded(page)
    page.close()


def test_compare_page_sorts_by_any_score(browser, compare_page):
    path, rows, _ = compare_page
    page, _, _ = _open(browser, path)
    page.fill("#page-size", "100")
    page.dispatch_event("#page-size", "change")
    values = [r["ssim:noisy"] for r in rows]
    page.click('th[data-key="ssim:noisy"]')  # higher is better: the first click puts the best first
    assert _column(page, "ssim:noisy") == pytest.approx(sorted(values, reverse=True))
    page.click('th[data-key="ssim:noisy"]')
    assert _column(page, "ssim:noisy") == pytest.approx(sorted(values))
    page.click('th[data-key="l1:copy source"]')  # lower is better: the first click puts the best first
    assert _column(page, "l1:copy source") == pytest.approx(sorted(r["l1:copy source"] for r in rows))
    assert "sorted-asc" in page.get_attribute('th[data-key="l1:copy source"]', "class")
    page.close()


def test_compare_page_filters_pairs_where_one_method_beats_another(browser, compare_page):
    path, rows, _ = compare_page
    page, _, _ = _open(browser, path)
    page.fill("#page-size", "100")
    page.dispatch_event("#page-size", "change")
    page.select_option("#filter-x", "noisy")
    page.select_option("#filter-y", "copy source")
    page.select_option("#filter-score", "mask_ssim")
    page.fill("#filter-d", "0.2")
    page.check("#filter-on")
    expected = [r["__key"] for r in rows if r["mask_ssim:noisy"] - r["mask_ssim:copy source"] > 0.2]
    assert 0 < len(expected) < len(rows)  # the filter keeps some pairs and drops others
    shown = page.eval_on_selector_all("#pairs tbody tr", "rows => rows.map(r => r.dataset.key)")
    assert shown == expected
    assert page.inner_text("#status").startswith(f"{len(expected)} of 60 rows pass the filter")
    page.select_option("#filter-score", "l1")  # lower is better: noisy's L1 must be 0.2 below copy's
    expected = [r["__key"] for r in rows if r["l1:copy source"] - r["l1:noisy"] > 0.2]
    assert page.eval_on_selector_all("#pairs tbody tr", "rows => rows.map(r => r.dataset.key)") == expected
    page.uncheck("#filter-on")
    assert page.locator("#pairs tbody tr").count() == 60
    page.close()


def test_failures_page_loads_and_sorts_by_a_cause(browser, tmp_path):
    synth = Synthetic(30, seed=8)
    generated = synth.generated.copy()
    generated[::4] = np.random.default_rng(0).integers(0, 256, generated[::4].shape, dtype=np.uint8)
    folder = write_folder(tmp_path / "ours", "strips", synth.pairs, generated, synth.source, synth.target)
    result = find_failures(
        folder, annotations=synth.annotations(tmp_path / "a.csv"), out=tmp_path / "out", worst=12
    )
    page, outside, errors = _open(browser, tmp_path / "out" / "failures.html")
    assert outside == [] and errors == []
    assert page.locator("#pairs tbody tr").count() == 12
    assert page.locator("#pairs img").count() == 24 and _images_loaded(page)  # strip + per-part sheet
    assert _column(page, "rank") == list(range(1, 13))
    page.click('th[data-key="large_warp"]')
    warps = [r["values"]["large_warp"] for r in result["pairs"][:12]]
    assert _column(page, "large_warp") == pytest.approx(sorted(warps))
    page.click('th[data-key="score"]')  # higher is better: best of the worst first
    assert _column(page, "score") == pytest.approx(
        sorted((r["score"] for r in result["pairs"][:12]), reverse=True)
    )
    page.close()


@pytest.mark.skipif(
    not os.environ.get("DEFORMGAN_DOCS_SCREENSHOTS"), reason="set DEFORMGAN_DOCS_SCREENSHOTS=1"
)
def test_docs_screenshots(browser, tmp_path, shared):
    """Re-render the documentation screenshots from the real Market triplets (Def-GAN vs copying the
    source written as JPEG vis strips), with a filter set on the comparison page."""
    from deformgan.evaluation.formats import read_method

    annotations = shared / "data" / "annotations"
    csvs = [annotations / "market-annotation-train.csv", annotations / "market-annotation-test.csv"]
    triplets = shared / "data" / "triplets" / "market"
    strips = read_method(triplets)
    zeros = np.zeros_like(strips.source)
    copy = write_folder(
        tmp_path / "copy",
        "vis",
        strips.pairs,
        strips.source,
        strips.source,
        strips.target,
        (zeros, zeros),
        ".jpg",
    )
    compare_methods(
        {"Def-GAN": triplets, "copy the source": copy}, annotations=csvs, out=tmp_path / "compare",
        metrics=("ssim", "mask_ssim", "l1", "ds_hog"),
    )  # fmt: skip
    page, _, _ = _open(browser, tmp_path / "compare" / "compare.html", 1400, 1200)
    page.check("#filter-on")
    page.select_option("#filter-score", "mask_ssim")
    page.fill("#filter-d", "0.15")
    page.dispatch_event("#filter-d", "change")
    page.click('th[data-key="mask_ssim:Def-GAN"]')
    page.screenshot(path=str(DOCS / "compare-screenshot.png"))
    page.close()
    find_failures(
        triplets, annotations=csvs, train_annotations=csvs[0], out=tmp_path / "failures", worst=20,
    )  # fmt: skip
    page, _, _ = _open(browser, tmp_path / "failures" / "failures.html", 1400, 1200)
    page.screenshot(path=str(DOCS / "failures-screenshot.png"))
    page.close()
