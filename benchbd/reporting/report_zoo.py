"""A zoo folder's page in the site (`benchbd report`): its model detectors' table, the plot of
their test models' scores, and each detector's models one by one.

A zoo is not a grid of runs: it has no attack x defense rows to rank, but one row per model
detector, measured over many models. Its page shows the table `benchbd table ZOO_DIR` prints
(benchbd.reporting.zoo_table, written as HTML by the one table writer) and the picture `benchbd
plot ZOO_DIR` draws (benchbd.reporting.zoo_plot), with the same styles as the grids' pages and,
like them, nothing fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from benchbd.reporting.report_html import GENERATOR, escape, head
from benchbd.reporting.zoo_frame import Detection, Zoo, zoo_frame
from benchbd.reporting.zoo_plot import write_zoo_plot
from benchbd.reporting.zoo_table import render

ZOO_PLOT = "zoo.png"
MODEL_FIELDS = ("part", "attack", "target", "poison_count", "seed", "clean", "score",
                "named_target", "seconds", "fingerprint")  # fmt: skip


def write_zoo_page(zoo: Zoo, build: Path, name: str, version: str,
                   back: str | None = None) -> Path:  # fmt: skip
    """The zoo's page (`index.html`) and its plot, written into `build`."""
    build.mkdir(parents=True, exist_ok=True)
    write_zoo_plot(zoo, build / ZOO_PLOT)
    page = build / "index.html"
    page.write_text(zoo_page(zoo, name, version, back), encoding="utf-8")
    return page


def zoo_page(zoo: Zoo, name: str, version: str, back: str | None = None) -> str:
    title = f"benchbd zoo: {name}"
    frame = zoo_frame(zoo)
    link = f'<p><a href="{escape(back)}">All grids</a></p>' if back else ""
    warnings = "".join(f"<li>{escape(line)}</li>" for line in zoo.warnings)
    parts = [
        head(title),
        link,
        f"<h1>{escape(title)}</h1>",
        f"<p>{zoo.models} models scored by {len(frame)} model detectors (<code>benchbd zoo "
        "--detect</code>): each detector scores every model, higher meaning more likely "
        "poisoned. Split rule: "
        f"{escape(zoo.split_rule or 'not recorded')}.</p>",
        f'<section class="warnings"><h2>Warnings</h2><ul>{warnings}</ul></section>'
        if warnings
        else "",
        '<section><h2>Model detectors</h2><div class="scroll" id="zoo">'
        f"{render(frame, 'html', zoo.split_rule)}</div></section>",
        "<section><h2>Test models' scores</h2><figure>"
        f'<img src="{ZOO_PLOT}" alt="each detector\'s scores of the test models, poisoned '
        'against clean, with the validation threshold">'
        "<figcaption>One panel per detector, on its own score scale: every test model, clean "
        "(grey) and poisoned (coloured by attack; a black edge where the detector named "
        "another target), and the threshold fixed on the validation models (dashed)."
        "</figcaption></figure></section>",
        "<section><h2>Models</h2>" + "".join(_models(d) for d in zoo.detections) + "</section>",
        f"<footer>Written by benchbd {escape(version)} (<code>{GENERATOR}</code>). Nothing on "
        "this page is fetched from elsewhere.</footer>",
        "</body>\n</html>\n",
    ]
    return "\n".join(part for part in parts if part)


def _models(detection: Detection) -> str:
    """A detector's every model, validation part first, as a collapsed table."""
    order = sorted(detection.models, key=lambda m: (m.get("part") != "validation",
                                                   bool(m.get("clean")), str(m.get("attack")),
                                                   m["score"]))  # fmt: skip
    heads = "".join(f"<th>{escape(field)}</th>" for field in MODEL_FIELDS)
    rows = "".join("<tr>" + "".join(f"<td>{escape(_cell(m.get(field)))}</td>"
                                    for field in MODEL_FIELDS) + "</tr>"
                   for m in order)  # fmt: skip
    return (f"<details><summary>{escape(detection.name)}: {len(order)} models "
            f"({escape(detection.path.name)})</summary><table class=\"fields\">"
            f"<thead><tr>{heads}</tr></thead><tbody>{rows}</tbody></table></details>")  # fmt: skip


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
