"""Claims decided from result files: the claim file's checks, the numbers and verdicts, the
generated docs/claims.md, and every verdict word of the README and docs against its claim."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.reporting.claims import decide_all, read_claims
from benchbd.reporting.intervals import interval, ratio_interval, t_quantile, verdict

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def claims_cli(*args: str):
    return CliRunner().invoke(app, ["claims", *args])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "claims.toml"
    path.write_text(text)
    return path


def sig_folder(tmp_path: Path) -> Path:
    """A results folder of real committed files: SIG against CleanCLIP and no defense, seeds
    0-2."""
    folder = tmp_path / "sig"
    folder.mkdir()
    for path in sorted((RESULTS / "frontier").glob("sig__*__seed[012]__*.json")):
        if "__cleanclip__" in path.name or "__none__" in path.name:
            shutil.copy(path, folder)
    return folder


CLAIM = """
[[claim]]
id = "sig-survives"
claim = "SIG survives CleanCLIP"
folder = "{folder}"
attack = "sig"
defense = "cleanclip"
metric = "after.asr"
comparison = ">="
threshold = 0.5
"""


def test_a_claim_reads_one_file_per_seed_and_its_interval_is_the_t_interval(tmp_path):
    folder = sig_folder(tmp_path)
    path = write(tmp_path, CLAIM.format(folder=folder))
    (decision,) = decide_all(read_claims(path))
    files = sorted(folder.glob("sig__cleanclip__*.json"))
    recorded = {json.loads(p.read_text())["seed"]: json.loads(p.read_text()) for p in files}
    assert decision.seeds == tuple(sorted(recorded))
    assert decision.values == tuple(recorded[s]["metrics"]["after"]["asr"] for s in decision.seeds)
    expected = interval(decision.values)
    assert decision.found == expected
    assert decision.by_interval == verdict(expected, ">=", 0.5)
    # a seed run twice counts once: the newest file by `created`
    again = json.loads(files[0].read_text())
    again["created"] = "2999-01-01T00:00:00+00:00"
    again["metrics"]["after"]["asr"] = 0.25
    (folder / "sig__cleanclip__again.json").write_text(json.dumps(again))
    (decision,) = decide_all(read_claims(path))
    assert decision.found.n == len(files)
    assert decision.values[decision.seeds.index(again["seed"])] == 0.25


def test_a_claim_is_decided_on_five_seeds_or_its_own_minimum_else_inconclusive(tmp_path):
    """Three seeds whose interval clears the threshold are a first sign, not a verdict: the
    claim is inconclusive, and its note keeps what the interval alone says; five decide it."""
    folder = sig_folder(tmp_path)
    text = CLAIM.format(folder=folder).replace('"after.asr"', '"after.ca"').replace(
        'comparison = ">="\nthreshold = 0.5', 'comparison = ">="\nthreshold = 0.0')
    (three,) = decide_all(read_claims(write(tmp_path, text)))
    assert len(three.values) == 3 and three.by_interval == "holds"
    assert three.verdict == "inconclusive"
    assert three.note() == "3 of 5 seeds; the interval alone: holds"
    assert "inconclusive" in three.citation()
    (path,) = folder.glob("sig__cleanclip__seed0__*.json")
    for seed in (3, 4):
        copy = json.loads(path.read_text())
        copy["seed"] = seed
        (folder / f"sig__cleanclip__seed{seed}__copy.json").write_text(json.dumps(copy))
    (five,) = decide_all(read_claims(write(tmp_path, text)))
    assert len(five.values) == 5 and five.verdict == "holds" and five.note() == ""
    (more,) = decide_all(read_claims(write(tmp_path, text + "min_seeds = 10\n")))
    assert more.verdict == "inconclusive" and more.note().startswith("5 of 10 seeds")


def test_a_difference_metric_is_computed_per_seed(tmp_path):
    folder = sig_folder(tmp_path)
    text = CLAIM.format(folder=folder).replace('"after.asr"', '"before.ca - after.ca"')
    (decision,) = decide_all(read_claims(write(tmp_path, text)))
    for seed, value in zip(decision.seeds, decision.values, strict=True):
        (path,) = folder.glob(f"sig__cleanclip__seed{seed}__*.json")
        metrics = json.loads(path.read_text())["metrics"]
        assert value == pytest.approx(metrics["before"]["ca"] - metrics["after"]["ca"])


def test_a_selection_of_two_experiments_is_an_error_naming_what_differs(tmp_path):
    text = CLAIM.format(folder=RESULTS / "objective").replace('"sig"', '"badnet"')
    made = claims_cli(str(write(tmp_path, text)))
    assert made.exit_code == 2 and made.stdout == ""
    line = made.stderr.strip()
    assert line.startswith("benchbd: error: claim 'sig-survives', field 'where':")
    assert "defense.params.lr" in line and "\n" not in line


def test_a_claim_that_reads_nothing_says_so_and_strict_fails(tmp_path):
    folder = sig_folder(tmp_path)
    path = write(tmp_path, CLAIM.format(folder=folder).replace('"sig"', '"badclip"'))
    made = claims_cli(str(path), "--format", "json")
    assert made.exit_code == 0
    (record,) = json.loads(made.stdout)
    assert record["verdict"] == "no results" and record["n"] == 0
    assert "sig-survives" in made.stderr
    assert claims_cli(str(path), "--strict", "--format", "csv").exit_code == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("comparison = \">=\"", "comparison = \"=>\""), "comparison"),
        (("threshold = 0.5", "threshold = nan"), "threshold"),
        (("threshold = 0.5", "threshold = inf"), "threshold"),
        (("threshold = 0.5", "threshold = \"0.5\""), "threshold"),
        (("metric = \"after.asr\"", "metric = \"__import__('os')\""), "metric"),
        (("attack = \"sig\"", "atack = \"sig\""), "atack"),
        (("comparison = \">=\"\n", ""), "comparison"),
        (("defense = \"cleanclip\"", "defense = \"cleanclip\"\nwhere = { seed = inf }"),
         "where.seed"),
        (("threshold = 0.5\n", "threshold = 0.5\n[claim.over]\nfolder = \"/nowhere\"\n"),
         "over.folder"),
        (("threshold = 0.5\n", "threshold = 0.5\n[claim.over]\nseeds = [1]\n"), "over.seeds"),
    ],
)  # fmt: skip
def test_a_mistake_in_the_claim_file_is_one_line_naming_the_claim_and_field(
    tmp_path, change, field
):
    text = CLAIM.format(folder=sig_folder(tmp_path)).replace(*change)
    made = claims_cli(str(write(tmp_path, text)))
    assert made.exit_code == 2, made.output
    assert made.stderr.startswith(f"benchbd: error: claim 'sig-survives', field '{field}'")
    assert made.stderr.count("\n") == 1 and "Traceback" not in made.output


def test_a_missing_folder_and_a_repeated_id_are_named(tmp_path):
    made = claims_cli(str(write(tmp_path, CLAIM.format(folder=tmp_path / "nowhere"))))
    assert made.exit_code == 2
    assert made.stderr.startswith("benchbd: error: claim 'sig-survives', field 'folder'")
    twice = CLAIM.format(folder=sig_folder(tmp_path)) * 2
    made = claims_cli(str(write(tmp_path, twice)))
    assert made.stderr.startswith("benchbd: error: claim 'sig-survives', field 'id'")
    made = claims_cli(str(tmp_path / "none.toml"))
    assert made.exit_code == 2 and "no claim file" in made.stderr


def fieller_by_search(num, den, paired):
    """The ratios r whose t statistic of mean(num) - r mean(den) is within the t quantile,
    found by scanning r (Fieller's set, computed without the quadratic)."""
    n = min(len(num), len(den))
    m1, m2 = sum(num) / len(num), sum(den) / len(den)
    t = t_quantile(n)

    def inside(r: float) -> bool:
        if paired:
            diffs = [a - r * b for a, b in zip(num, den, strict=True)]
            m = sum(diffs) / n
            se2 = sum((d - m) ** 2 for d in diffs) / (n - 1) / n
        else:
            var = [sum((x - sum(xs) / len(xs)) ** 2 for x in xs) / (len(xs) - 1) / len(xs)
                   for xs in (num, den)]  # fmt: skip
            se2 = var[0] + r * r * var[1]
        return (m1 - r * m2) ** 2 <= t * t * se2

    grid = [i / 10000 for i in range(0, 200001)]
    found = [r for r in grid if inside(r)]
    return min(found), max(found)


def test_the_ratio_interval_is_fiellers_paired_and_unpaired():
    num, den = [0.30, 0.22, 0.26, 0.28, 0.24], [0.05, 0.04, 0.06, 0.05, 0.045]
    for paired in (True, False):
        found = ratio_interval(num, den, paired)
        low, high = fieller_by_search(num, den, paired)
        assert found.mean == pytest.approx(sum(num) / sum(den))
        assert (found.low, found.high) == pytest.approx((low, high), abs=2e-4)
    # a denominator that does not vary: the numerator's t interval over its mean
    flat = ratio_interval(num, [0.05] * 5, paired=True)
    plain = interval(num)
    assert (flat.low, flat.high) == pytest.approx((plain.low / 0.05, plain.high / 0.05))
    # a denominator whose interval reaches zero leaves the ratio unbounded: inconclusive
    loose = ratio_interval([0.3, 0.2, 0.25], [0.04, 0.001, 0.09], paired=True)
    assert math.isinf(loose.low) and math.isinf(loose.high)
    assert verdict(loose, ">=", 3) == "inconclusive"


def test_a_ratio_claim_reads_both_selections(tmp_path):
    text = CLAIM.format(folder=sig_folder(tmp_path)) + '\n[claim.over]\ndefense = "none"\n'
    (decision,) = decide_all(read_claims(write(tmp_path, text)))
    assert decision.paired and decision.seeds == decision.over_seeds
    assert decision.found.mean == pytest.approx(sum(decision.values) / sum(decision.over_values))


# --- the committed claims and the docs that state them ----------------------------------


def test_docs_claims_md_is_what_the_command_makes_of_the_committed_results(monkeypatch):
    monkeypatch.chdir(ROOT)
    made = claims_cli("results/claims.toml", "--format", "markdown")
    assert made.exit_code == 0, made.output
    assert made.stdout == (ROOT / "docs" / "claims.md").read_text()


# A verdict phrase and the verdict of the claim a sentence stating it must cite.
VERDICT_WORDS = {
    r"\bholds\b": "holds", r"\bis met\b": "holds", r"\bare met\b": "holds",
    r"\breproduces\b": "holds", r"\bsurvives\b": "holds",
    r"\bfails\b": "fails", r"\b(?:does|do) not hold\b": "fails", r"\bnot met\b": "fails",
    r"\b(?:does|do) not reproduce\b": "fails", r"\b(?:does|do) not survive\b": "fails",
    r"\binconclusive\b": "inconclusive",
}  # fmt: skip
CITATION = re.compile(r"claim `([a-z0-9-]+)`: (holds|fails|inconclusive|no results)"
                      r"(?:, ([-0-9.]+ \[[^\]]+\]), "
                      r"n = ([0-9]+(?: ?/ ?[0-9]+)?(?: models)?))?")  # fmt: skip


def sentences(markdown: str) -> list[str]:
    """Prose sentences: fenced code, HTML comments and table rows left out; list items,
    headings and paragraphs apart."""
    markdown = re.sub(r"```.*?```", "", markdown, flags=re.S)
    markdown = re.sub(r"<!--.*?-->", "", markdown, flags=re.S)
    blocks, current = [], []
    for line in markdown.splitlines():
        starts = line.startswith(("- ", "#", "|")) or re.match(r"\d+\. ", line)
        if not line.strip() or starts:
            blocks.append(" ".join(current))
            current = [] if not line.strip() or line.startswith("|") else [line]
            if line.startswith("#"):
                blocks.append(line)
                current = []
        else:
            current.append(line.strip())
    blocks.append(" ".join(current))
    return [s for block in blocks for s in re.split(r"(?<=[.!?])\s+(?=[A-Z*(\[`])", block) if s]


def test_every_verdict_word_in_the_docs_cites_a_claim_with_that_verdict(monkeypatch):
    monkeypatch.chdir(ROOT)
    decided = {d.claim.id: d for d in decide_all(read_claims(RESULTS / "claims.toml"))}
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    wrong = []
    for page in pages:
        if page.name == "claims.md":  # generated: its verdicts are the claims' own
            continue
        for sentence in sentences(page.read_text()):
            cited = CITATION.findall(sentence)
            for claim_id, said, numbers, n in cited:
                if claim_id not in decided:
                    wrong.append(f"{page.name}: unknown claim {claim_id!r}")
                    continue
                found = decided[claim_id]
                if said != found.verdict:
                    wrong.append(f"{page.name}: {claim_id} is {found.verdict}, not {said}")
                elif numbers and (numbers, n) != (found.interval_text(), found.n_text()):
                    wrong.append(f"{page.name}: {claim_id} is {found.citation()}, "
                                 f"not {numbers}, n = {n}")  # fmt: skip
            prose = re.sub(r"`[^`]*`", "", sentence)  # code spans are names, not verdicts
            verdicts = {said for _, said, _, _ in cited}
            for pattern, meaning in VERDICT_WORDS.items():
                if re.search(pattern, prose, flags=re.I) and meaning not in verdicts:
                    wrong.append(f"{page.name}: {meaning!r} without a claim that says so: "
                                 f"{sentence[:120]}")  # fmt: skip
    assert not wrong, "\n".join(wrong)


def test_the_sentence_splitter_sees_verdicts_in_prose_not_in_code():
    text = "Text with `holds` in code.\n\n```\nfails\n```\n- RoCLIP fails here. Next one.\n"
    found = sentences(text)
    assert found == ["Text with `holds` in code.", "- RoCLIP fails here.", "Next one."]


def test_out_writes_the_table_that_stdout_shows(tmp_path):
    path = write(tmp_path, CLAIM.format(folder=sig_folder(tmp_path)))
    shown = claims_cli(str(path), "--format", "markdown")
    made = claims_cli(str(path), "--format", "markdown", "--out", str(tmp_path / "claims.md"))
    assert made.exit_code == 0 and (tmp_path / "claims.md").read_text() == shown.stdout
    assert "| sig-survives |" in shown.stdout
    assert claims_cli(str(path), "--out", str(tmp_path / "x.md")).exit_code == 2  # rich: no file
