"""benchmarks/collect.py: BENCHMARKS.md gathers the result files with their links still working."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("collect", ROOT / "benchmarks" / "collect.py")
collect = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collect)


def test_relative_links_are_rebased_from_the_results_folder_to_the_root():
    results, root = ROOT / "benchmarks" / "results", ROOT
    text = (
        '![bars](reid.png) and [script](../ablation.py "the script") and [docs](../../docs/reid.md#table-1) '
        "and [web](https://example.org/a.png), [anchor](#setting), [absolute](/tmp/x.png)"
    )
    # A file beside the result file is two folders below the root; ../ is benchmarks/; ../../ the root.
    # URLs, anchors and absolute paths do not depend on where the text sits.
    assert collect.rebase_links(text, results, root) == (
        '![bars](benchmarks/results/reid.png) and [script](benchmarks/ablation.py "the script") and '
        "[docs](docs/reid.md#table-1) and [web](https://example.org/a.png), [anchor](#setting), "
        "[absolute](/tmp/x.png)"
    )


def test_collect_demotes_headings_and_rebases_links(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "reid_augmentation.md").write_text("# Re-ID\n\n![bars](reid_augmentation.png)\n")
    text = collect.collect(tmp_path)
    # Only the present file is collected, under its title; its '#' heading becomes '###'.
    assert "## Re-ID with generated people (issue 14)\n\n### Re-ID\n\n" in text
    assert "![bars](benchmarks/results/reid_augmentation.png)" in text
    assert "## Nearest-neighbour loss" not in text


def test_every_relative_link_of_benchmarks_md_resolves():
    """The regenerated BENCHMARKS.md at the root: each relative link or image names an existing file."""
    text = (ROOT / "BENCHMARKS.md").read_text()
    targets = [m.group(2).partition("#")[0] for m in collect.LINK.finditer(text)]
    relative = [t for t in targets if not collect.NOT_RELATIVE.match(t)]
    assert "benchmarks/results/reid_augmentation.png" in relative
    assert [t for t in relative if not (ROOT / t).is_file()] == []
