"""The site's one page: the sortable leaderboard, the trade-off plot, the trigger gallery and
each row's recorded configuration.

Self-contained so that it reads offline and from a file:// URL: styles and the sorting script
are inline, pictures are files beside the page, nothing is fetched. Every number cell carries
its mean in `data-sort`, so the script sorts numbers as numbers and empty cells last, whatever
the cell shows ("0.024 ± 0.002"). `?sort=KEY` in the address clicks that column's header once
the page has loaded: a link to a sorted view, and what the browser test drives.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchbd.core.results import higher_is_better
from benchbd.reporting.ranking import rule_text
from benchbd.reporting.report_cells import Cell, Table
from benchbd.reporting.report_gallery import Trigger
from benchbd.reporting.spreads import CAPTION, SeedSpread
from benchbd.reporting.table_columns import column_header, split_key

GENERATOR = "benchbd report"  # the page's <meta name="generator">: marks a folder as a site
LABELS = {  # the columns, in order: a spread's key -> (header, what it measures)
    "before_ca": (
        "CA before",
        "clean accuracy of the poisoned model, on the classifier the "
        "after uses (a linear-head defense: the probe of the poisoned encoder)",
    ),
    "before_asr": (
        "ASR before",
        "attack success rate of the poisoned model, on the classifier the after uses",
    ),
    "after_ca": ("CA after", "clean accuracy after the defense"),
    "after_asr": ("ASR after", "attack success rate after the defense"),
    "der": ("DER", "defense effectiveness rating"),
    "before_zeroshot_asr": (
        "ASR before (zero-shot)",
        "attack success rate of the poisoned "
        "model with the zero-shot classifier, whatever the after uses",
    ),
    "psnr_db": ("PSNR", "trigger visibility: PSNR in dB against the clean image"),
    "ssim": ("SSIM", "trigger visibility: SSIM against the clean image"),
    "linf": ("L-inf", "trigger visibility: largest pixel change, a fraction of 255"),
}
# The details list a result's fields in this order, then the rest by name.
FIELD_ORDER = ("seed", "fingerprint", "attack", "defense", "dataset", "model", "target", "poison",
               "pretrain", "metrics", "der", "versions", "runtime", "timings", "extra")  # fmt: skip
LONG_LIST = 8  # longer lists (poisoned rows, a warp field) are shown as their length


@dataclass(frozen=True)
class Page:
    """Everything the page shows."""

    source: str  # the results folder's name
    n_results: int
    table: Table
    plot: str | None  # the trade-off picture's path inside the site
    triggers: list[Trigger] | None  # None: the gallery was not asked for
    warnings: list[str]
    version: str
    back: str | None = None  # the index of a site of several grids, relative to this page


def page(content: Page) -> str:
    title = f"benchbd leaderboard: {content.source}"
    back = f'<p><a href="{escape(content.back)}">All grids</a></p>' if content.back else ""
    parts = [
        head(title),
        back,
        f"<h1>{escape(title)}</h1>",
        _intro(content),
        _warnings(content.warnings),
        _board(content.table),
        _plot(content.plot),
        _gallery(content.triggers),
        _configurations(content.table),
        f"<footer>Written by benchbd {escape(content.version)} (<code>benchbd report</code>). "
        "Nothing on this page is fetched from elsewhere.</footer>",
        f"<script>{SCRIPT}</script>",
        "</body>\n</html>\n",
    ]
    return "\n".join(part for part in parts if part)


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def head(title: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f'<meta name="generator" content="{GENERATOR}">\n<title>{escape(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>")  # fmt: skip


def _intro(content: Page) -> str:
    rows = len(content.table.cells)
    rule = rule_text(column_header(content.table.sort), content.table.tolerance)
    return (f"<p>{content.n_results} result files, {rows} rows: each is one experiment "
            "(attack, defense and every recorded setting). "
            f"{escape(CAPTION)} {escape(rule)} ★ marks the best (rank 1) of each attack and "
            "setting; unranked rows are greyed and say why; baselines in grey are never ranked. A "
            "defense's name links to the configuration its files record. Click a column "
            "header to sort; click again to reverse. <code>?sort=after_asr</code> in the "
            "address opens the page sorted by that column.</p>")  # fmt: skip


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in warnings)
    return f'<section class="warnings"><h2>Warnings</h2><ul>{items}</ul></section>'


def _keys(cells: list[Cell]) -> list[str]:
    """The metric columns: the terminal table's, then the trigger's visibility, each where some
    row has it (a row carries a spread for every number its files record, shown or not)."""
    probe = any(cell.row.basis == "linear-probe" for cell in cells)
    return [key for key in LABELS if any(key in cell.row.spreads for cell in cells)
            and (probe or not key.startswith("before_zeroshot"))]  # fmt: skip


def _better(key: str) -> bool | None:
    """Whether a column is better high (True), low (False), or neither (visibility)."""
    return higher_is_better(split_key(key)[1])


def _direction(key: str) -> str:
    """The first click sorts best first where the metric has a better direction."""
    return "descending" if _better(key) else "ascending"


def _header(key: str, label: str, kind: str, first: str, note: str = "") -> str:
    note_attr = f' title="{escape(note)}"' if note else ""
    return (
        f'<th data-key="{escape(key)}" data-type="{kind}" data-first="{first}" '
        f'aria-sort="none"{note_attr}><button type="button">{escape(label)}</button></th>'
    )


def _board(table: Table) -> str:
    keys = _keys(table.cells)
    heads = [_header(f"group{i}", name or f"setting {i + 1}", "text", "ascending", name or "")
             for i, name in enumerate(table.group_names)]  # fmt: skip
    heads += [
        _header("attack", "attack", "text", "ascending"),
        _header("defense", "defense", "text", "ascending"),
        _header("seeds", "seeds", "number", "descending", "distinct seeds averaged (n)"),
        _header(
            "rank",
            "rank",
            "number",
            "ascending",
            "rank within the attack and setting; unranked: the reason",
        ),
    ]
    for key in keys:
        label, what = LABELS.get(key, (key, key))
        better = _better(key)
        note = what if better is None else f"{what} ({'higher' if better else 'lower'} is better)"
        heads.append(_header(key, label, "number", _direction(key), note))
    body = "\n".join(_board_row(i, cell, keys) for i, cell in enumerate(table.cells))
    return (f'<section><h2>Leaderboard</h2><div class="scroll"><table id="board">\n'
            f"<thead><tr>{''.join(heads)}</tr></thead>\n<tbody>\n{body}\n</tbody>\n"
            "</table></div></section>")  # fmt: skip


def _number(spread: SeedSpread | None, seeds: int) -> str:
    if spread is None:
        return '<td class="num" data-sort="">-</td>'
    value = "" if spread.mean is None else repr(float(spread.mean))
    return f'<td class="num" data-sort="{value}">{escape(spread.text(seeds))}</td>'


def _board_row(index: int, cell: Cell, keys: list[str]) -> str:
    row = cell.row
    classes = [
        name
        for name, on in (
            ("best", row.best),
            ("baseline", row.baseline),
            ("unranked", not row.rank and not row.baseline),
        )
        if on
    ]
    attrs = f' class="{" ".join(classes)}"' if classes else ""
    mark = (' <span class="star" title="best of this attack and setting">★</span>'
            if row.best else "")  # fmt: skip
    cells = [f"<td>{escape(value)}</td>" for value in row.groups]
    link = f'<a href="#cell-{index}" title="recorded configuration">{escape(row.defense)}</a>'
    cells += [f"<td>{escape(row.attack)}</td>", f"<td>{link}{mark}</td>",
              f'<td class="num" data-sort="{row.seeds}">{row.seeds}</td>',
              f'<td class="num" data-sort="{row.rank or ""}">'
              f"{escape(row.rank_text)}</td>"]  # fmt: skip
    cells += [_number(row.spreads.get(key), row.seeds) for key in keys]
    return f'<tr data-row="{index}"{attrs}>{"".join(cells)}</tr>'


def _plot(plot: str | None) -> str:
    if plot is None:
        return ""
    return ('<section><h2>Clean accuracy against attack success</h2><figure>'
            f'<img src="{escape(plot)}" alt="CA against ASR for each attack, arrows from the '
            'poisoned model to each defended model, and ASR after each defense">'
            "<figcaption>Each panel: the poisoned model (✕ zero-shot, ◆ the linear probe a "
            "linear-head defense is compared with) and an arrow to each defended model, with "
            "the 95 % t interval over seeds as error bars; a good defense points left and "
            "stays level. ★ the best row, hollow points and hatched bars the unranked ones. "
            "Below: ASR after each defense.</figcaption></figure>"
            "</section>")  # fmt: skip


def _gallery(triggers: list[Trigger] | None) -> str:
    if triggers is None:
        return ""
    if not triggers:
        return "<section><h2>Triggers</h2><p>No attack here adds a trigger.</p></section>"
    figures = []
    for trigger in triggers:
        if trigger.file is None:
            figures.append(f'<figure class="missing"><figcaption>{escape(trigger.caption)}: not '
                           f"drawn ({escape(trigger.reason)})</figcaption></figure>")  # fmt: skip
            continue
        figures.append(f'<figure><img src="{escape(trigger.file)}" alt="{escape(trigger.attack)} '
                       'trigger: clean test images, triggered, amplified difference">'
                       f"<figcaption>{escape(trigger.caption)}</figcaption></figure>")  # fmt: skip
    return ("<section><h2>Triggers</h2><p>Clean test images, the same images triggered as "
            "the run evaluated them, and their amplified difference.</p>"
            f'<div class="gallery">{"".join(figures)}</div></section>')  # fmt: skip


def _configurations(table: Table) -> str:
    blocks = [_details(i, cell, table.group_names) for i, cell in enumerate(table.cells)]
    return ("<section><h2>Configurations</h2><p>What each row's result files record: the "
            "settings its seeds share, then what differs from seed to seed.</p>"
            f"{''.join(blocks)}</section>")  # fmt: skip


def _details(index: int, cell: Cell, names: Sequence[str | None]) -> str:
    row = cell.row
    split = ", ".join(
        f"{name or f'setting {i + 1}'}={value}"
        for i, (name, value) in enumerate(zip(names, row.groups, strict=True))
    )
    label = f"{row.attack} / {row.defense}" + (f" ({split})" if split else "")
    seeds = f"{row.seeds} seed{'s' if row.seeds != 1 else ''}"
    summary = f"{escape(label)}: {seeds}{' ★' if row.best else ''}"
    return (
        f'<details id="cell-{index}"><summary>{summary}</summary>{_fields(cell.results)}</details>'
    )


def _fields(results: Sequence[Mapping[str, Any]]) -> str:
    if not results:
        return "<p>The result files of this row were not identified.</p>"
    files = [_with_file(dict(flatten(result)), result) for result in results]
    keys = list(dict.fromkeys(key for flat in files for key in flat))
    shared = [k for k in keys if all(k in f for f in files) and len({f[k] for f in files}) == 1]
    varied = [k for k in keys if k not in shared]
    parts = ['<h4>Shared by every seed</h4><table class="fields">']
    parts += [f"<tr><th>{escape(k)}</th><td>{escape(files[0][k])}</td></tr>" for k in shared]
    parts.append("</table>")
    if varied:
        seeds = "".join(f"<th>seed {escape(r.get('seed'))}</th>" for r in results)
        parts.append(f'<h4>Per seed</h4><table class="fields"><tr><th></th>{seeds}</tr>')
        for key in varied:
            values = "".join(f"<td>{escape(f.get(key, '-'))}</td>" for f in files)
            parts.append(f"<tr><th>{escape(key)}</th>{values}</tr>")
        parts.append("</table>")
    return "".join(parts)


def _with_file(flat: dict[str, str], result: Mapping[str, Any]) -> dict[str, str]:
    path = getattr(result, "path", None)  # load_folder keeps the file each result came from
    return {"file": path.name, **flat} if path is not None else flat


def flatten(value: Any, path: str = "") -> list[tuple[str, str]]:
    """A result's fields as (dotted path, text) pairs, in FIELD_ORDER at the top level; long
    lists (the poisoned rows, a warp field) as their length and digest, everything else as
    recorded."""
    if isinstance(value, Mapping):
        keys = list(value)
        if not path:
            keys.sort(key=lambda k: (FIELD_ORDER.index(k) if k in FIELD_ORDER
                                     else len(FIELD_ORDER), k))  # fmt: skip
        pairs: list[tuple[str, str]] = []
        for key in keys:
            pairs += flatten(value[key], f"{path}.{key}" if path else str(key))
        return pairs
    if isinstance(value, list) and len(value) > LONG_LIST:  # its digest tells two lists apart
        digest = hashlib.sha256(json.dumps(value).encode()).hexdigest()[:12]
        return [(path, f"[{len(value)} values, sha256 {digest}…]")]
    if isinstance(value, str):
        return [(path, value)]
    return [(path, json.dumps(value))]


STYLE = """
:root { color-scheme: light; --line: #d0d7de; --muted: #57606a; --best: #dafbe1; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem;
  color: #1f2328; max-width: 110rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin: 0 0 .5rem; }
h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; border-bottom: 1px solid var(--line); }
h4 { margin: .8rem 0 .3rem; font-size: .95rem; }
code { background: #f6f8fa; padding: 0 .25rem; border-radius: 3px; }
.scroll { overflow-x: auto; }
#board { border-collapse: collapse; font-size: .85rem; }
#board th, #board td { border-bottom: 1px solid var(--line); padding: .25rem .45rem;
  white-space: nowrap; text-align: left; }
#board thead th { position: sticky; top: 0; background: #f6f8fa; }
#board th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0;
  cursor: pointer; color: inherit; }
#board th[aria-sort="ascending"] button::after { content: " ▲"; }
#board th[aria-sort="descending"] button::after { content: " ▼"; }
#board td.num { text-align: right; font-variant-numeric: tabular-nums; }
#board tr.best td { background: var(--best); font-weight: 600; }
#board tr.baseline td, #board tr.unranked td { color: var(--muted); }
#board a { color: inherit; }
.star { color: #1a7f37; }
.warnings { background: #fff8c5; border: 1px solid #d4a72c; padding: 0 1rem; }
figure { margin: 0 0 1rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .9rem; }
figure.missing figcaption { color: #9a6700; }
.gallery { display: flex; flex-wrap: wrap; gap: 1rem; }
.gallery figure { flex: 0 1 48rem; }
details { border: 1px solid var(--line); border-radius: 4px; padding: .3rem .6rem;
  margin: .3rem 0; }
details[open] { background: #fbfbfc; }
summary { cursor: pointer; }
table.fields { border-collapse: collapse; font-size: .8rem; }
table.fields th, table.fields td { border-bottom: 1px solid #eaeef2; padding: .1rem .5rem;
  text-align: left; vertical-align: top; font-family: ui-monospace, monospace; }
table.fields td { word-break: break-all; }
footer { margin-top: 2rem; color: var(--muted); font-size: .85rem; }
"""

SCRIPT = """
(() => {
  "use strict";
  const table = document.getElementById("board");
  if (!table) return;
  const body = table.tBodies[0];
  const heads = Array.from(table.tHead.rows[0].cells);
  const value = (row, index, numeric) => {
    const cell = row.cells[index];
    const text = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort")
                                                : cell.textContent.trim();
    if (!numeric) return text.toLowerCase();
    const number = parseFloat(text);
    return Number.isFinite(number) ? number : null;
  };
  const sortBy = (th, order) => {
    const index = heads.indexOf(th);
    const numeric = th.dataset.type === "number";
    const sign = order === "ascending" ? 1 : -1;
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = value(a, index, numeric), y = value(b, index, numeric);
      if (x === null || y === null) return (x === null) - (y === null);  // empty cells last
      return x < y ? -sign : x > y ? sign : 0;
    });
    rows.forEach((row) => body.appendChild(row));
    heads.forEach((h) => { if (h.hasAttribute("aria-sort")) h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", order);
  };
  heads.filter((th) => th.hasAttribute("aria-sort")).forEach((th) => {
    th.addEventListener("click", () => {
      const now = th.getAttribute("aria-sort");
      const order = now === "none" ? th.dataset.first
                                   : now === "ascending" ? "descending" : "ascending";
      sortBy(th, order);
    });
  });
  const wanted = new URLSearchParams(window.location.search).get("sort");
  const chosen = heads.find((th) => wanted && th.dataset.key === wanted);
  if (chosen) chosen.click();
  const openTarget = () => {
    const target = document.getElementById(window.location.hash.slice(1));
    if (target && target.tagName === "DETAILS") target.open = true;
  };
  window.addEventListener("hashchange", openTarget);
  openTarget();
})();
"""
