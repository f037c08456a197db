"""Self-contained HTML report pages: a sortable, filterable, paginated table of pairs with their images.

One page = one HTML file with its CSS and JavaScript inline (no CDN, no network); images are files beside
it, referenced by relative paths, so the folder can be moved or zipped as a whole. The rows are embedded
as JSON and rendered by a few lines of plain JavaScript: click a column header to sort by it (again to
reverse; missing values always last), page through the rows, and, on comparison pages, keep only the pairs
where method X beats method Y by more than d on a chosen score.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

#: Column kinds: a number (sortable, shown with ``digits``), text, an image path, a list of
#: ``[path, display height in px or None]`` shown one under the other, or trusted HTML.
KINDS = ("number", "text", "image", "images", "html")


@dataclass(frozen=True)
class Column:
    """One table column: ``key`` into each row dict, header ``label``, ``kind`` (:data:`KINDS`);
    number columns may say which direction is ``better`` ("higher" / "lower")."""

    key: str
    label: str
    kind: str = "number"
    better: str | None = None
    digits: int = 3
    title: str = ""
    height: int | None = None  # display height (CSS px) of an image column; None = the file's own

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.key}: kind {self.kind!r} not in {KINDS}")


def _clean(value):
    """JSON-safe values: NaN/inf -> None, numpy scalars -> Python numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return _clean(value.item())
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def script_json(value) -> str:
    """JSON for an inline ``<script type="application/json">``: ``</`` cannot close the script early."""
    return json.dumps(_clean(value), allow_nan=False).replace("</", "<\\/")


def html_table(header: Sequence[str], rows: Sequence[Sequence[str]], css_class: str = "summary") -> str:
    """A static table; every cell is escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body { font-family: system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 20px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: center; vertical-align: middle; }
table.summary td:first-child, table.summary th:first-child { text-align: left; }
#pairs th.sortable { cursor: pointer; background: #f2f2f2; user-select: none; }
#pairs th.sorted-asc::after { content: " \\25B2"; } #pairs th.sorted-desc::after { content: " \\25BC"; }
#pairs td.text { text-align: left; font-family: monospace; font-size: 11px; min-width: 150px;
  max-width: 220px; word-break: break-all; }
#pairs td[data-key="tags"] { text-align: left; min-width: 180px; max-width: 260px; font-size: 12px; }
#pairs img { display: block; image-rendering: pixelated; margin: 2px auto; }
.controls { margin: 10px 0; display: flex; gap: 12px; flex-wrap: wrap; align-items: center; }
.tag { display: inline-block; background: #fde2e1; border: 1px solid #e8a09c; border-radius: 3px;
  padding: 1px 4px; margin: 1px; font-size: 11px; white-space: nowrap; }
.muted { color: #777; } .note { font-size: 13px; max-width: 1100px; }
.pair { font-family: monospace; font-size: 11px; word-break: break-all; }
"""

_JS = """
(function () {
  const spec = JSON.parse(document.getElementById('spec').textContent);
  const rows = JSON.parse(document.getElementById('rows').textContent);
  const columns = spec.columns;
  const state = {key: spec.sort ? spec.sort.key : null, dir: spec.sort ? spec.sort.dir : 1, page: 0,
                 size: spec.page_size, filter: null};
  const table = document.getElementById('pairs');
  const status = document.getElementById('status');

  function fmt(col, v) {
    if (v === null || v === undefined) return 'n/a';
    return col.kind === 'number' ? Number(v).toFixed(col.digits) : String(v);
  }
  function passes(row) {
    const f = state.filter;
    if (!f) return true;
    const x = row[f.score + ':' + f.x], y = row[f.score + ':' + f.y];
    if (x === null || y === null || x === undefined || y === undefined) return false;
    return spec.comparison.better[f.score] === 'higher' ? x - y > f.d : y - x > f.d;
  }
  function compare(a, b) {
    const va = a[state.key], vb = b[state.key];
    const na = va === null || va === undefined, nb = vb === null || vb === undefined;
    if (na || nb) return na === nb ? a.__index - b.__index : (na ? 1 : -1);
    if (va < vb) return -state.dir;
    if (va > vb) return state.dir;
    return a.__index - b.__index;
  }
  function header() {
    const tr = document.createElement('tr');
    columns.forEach(function (col) {
      const th = document.createElement('th');
      th.textContent = col.label;
      th.dataset.key = col.key;
      if (col.title) th.title = col.title;
      if (col.kind === 'number' || col.kind === 'text') {
        th.className = 'sortable';
        if (state.key === col.key) th.className += state.dir > 0 ? ' sorted-asc' : ' sorted-desc';
        th.addEventListener('click', function () {
          if (state.key === col.key) state.dir = -state.dir;
          else { state.key = col.key; state.dir = col.better === 'higher' ? -1 : 1; }
          state.page = 0; render();
        });
      }
      tr.appendChild(th);
    });
    const thead = document.createElement('thead');
    thead.appendChild(tr);
    return thead;
  }
  function render() {
    let view = rows.filter(passes);
    if (state.key) view = view.slice().sort(compare);
    const pages = Math.max(1, Math.ceil(view.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    const shown = view.slice(state.page * state.size, (state.page + 1) * state.size);
    const tbody = document.createElement('tbody');
    shown.forEach(function (row) {
      const tr = document.createElement('tr');
      tr.dataset.key = row.__key;
      columns.forEach(function (col) {
        const td = document.createElement('td');
        const v = row[col.key];
        td.dataset.key = col.key;
        if (col.kind === 'image' || col.kind === 'images') {
          const items = col.kind === 'image' ? (v ? [[v, col.height]] : []) : (v || []);
          items.forEach(function (item) {
            const img = document.createElement('img');
            img.src = item[0]; img.alt = col.label;
            if (item[1]) img.style.height = item[1] + 'px';
            td.appendChild(img);
          });
        } else if (col.kind === 'html') {
          td.innerHTML = v || '';
        } else {
          td.textContent = fmt(col, v);
          td.className = col.kind;
          if (v !== null && v !== undefined) td.dataset.value = v;
        }
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    table.replaceChildren(header(), tbody);
    status.textContent = view.length + ' of ' + rows.length + ' rows' +
      (state.filter ? ' pass the filter' : '') + '; page ' + (state.page + 1) + ' of ' + pages;
    document.getElementById('prev').disabled = state.page === 0;
    document.getElementById('next').disabled = state.page >= pages - 1;
  }
  rows.forEach(function (row, i) { row.__index = i; });
  document.getElementById('prev').addEventListener('click', function () { state.page -= 1; render(); });
  document.getElementById('next').addEventListener('click', function () { state.page += 1; render(); });
  // Re-render only on a real change: a re-render between mousedown and mouseup (e.g. the input's change
  // event when it loses focus to a header click) would swallow that click.
  document.getElementById('page-size').addEventListener('change', function (e) {
    const size = Math.max(1, parseInt(e.target.value, 10) || spec.page_size);
    if (size === state.size) return;
    state.size = size; state.page = 0; render();
  });
  if (spec.comparison) {
    const apply = function () {
      const f = {x: document.getElementById('filter-x').value, y: document.getElementById('filter-y').value,
                 score: document.getElementById('filter-score').value,
                 d: parseFloat(document.getElementById('filter-d').value) || 0};
      const next = document.getElementById('filter-on').checked ? f : null;
      if (JSON.stringify(next) === JSON.stringify(state.filter)) return;
      state.filter = next; state.page = 0; render();
    };
    ['filter-on', 'filter-x', 'filter-y', 'filter-score', 'filter-d'].forEach(function (id) {
      document.getElementById(id).addEventListener('input', apply);
      document.getElementById(id).addEventListener('change', apply);
    });
  }
  render();
  document.body.dataset.ready = '1';
})();
"""


def _options(values: Sequence[str], selected: str | None = None) -> str:
    return "".join(
        f'<option value="{html.escape(v)}"{" selected" if v == selected else ""}>{html.escape(v)}</option>'
        for v in values
    )


def table_page(
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Mapping],
    *,
    intro_html: str = "",
    comparison: Mapping | None = None,
    sort: tuple[str, int] | None = None,
    page_size: int = 50,
    row_key: str = "key",
) -> str:
    """The HTML of one report page.

    rows: dicts holding every column's ``key`` (None = missing) and ``row_key`` (a unique id, put on each
    ``<tr data-key>``). comparison: ``{"methods": [...], "better": {score: "higher" | "lower"}}`` adds the
    "X beats Y by more than d" filter; rows then hold ``"<score>:<method>"`` values. sort: the initial
    (column key, +1 ascending / -1 descending). intro_html: trusted HTML shown above the table.
    """
    keys = {c.key for c in columns}
    data = []
    for row in rows:
        missing = keys - set(row)
        if missing:
            raise ValueError(f"row {row.get(row_key)!r} lacks columns {sorted(missing)}")
        item = {k: row[k] for k in keys}
        item["__key"] = str(row[row_key])
        if comparison is not None:
            for score in comparison["better"]:
                for method in comparison["methods"]:
                    item[f"{score}:{method}"] = row.get(f"{score}:{method}")
        data.append(item)
    spec = {
        "columns": [asdict(c) for c in columns],
        "page_size": page_size,
        "sort": None if sort is None else {"key": sort[0], "dir": sort[1]},
        "comparison": None if comparison is None else {"better": dict(comparison["better"])},
    }
    controls = (
        '<label>rows per page <input id="page-size" type="number" min="1" '
        f'value="{page_size}" style="width:5em"></label>'
        '<button id="prev">previous</button><button id="next">next</button><span id="status"></span>'
    )
    filter_html = ""
    if comparison is not None:
        methods = list(comparison["methods"])
        scores = list(comparison["better"])
        filter_html = (
            '<div class="controls" id="filter"><label><input id="filter-on" type="checkbox"> only pairs where'
            f'</label><select id="filter-x">{_options(methods, methods[0])}</select> beats '
            f'<select id="filter-y">{_options(methods, methods[-1])}</select> on '
            f'<select id="filter-score">{_options(scores, scores[0])}</select> by more than '
            '<input id="filter-d" type="number" step="0.01" value="0.05" style="width:5em">'
            '<span class="muted">(for L1/LPIPS, lower is better: "beats by d" means d lower)</span></div>'
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{intro_html}{filter_html}"
        f'<div class="controls">{controls}</div><table id="pairs"></table>'
        f'<script type="application/json" id="spec">{script_json(spec)}</script>'
        f'<script type="application/json" id="rows">{script_json(data)}</script>'
        f"<script>{_JS}</script></body></html>\n"
    )
