"""The docs' claim citations are rewritten from the decisions: across markdown's line breaks,
keeping them, and naming the citations of claims that do not exist."""

from benchbd.reporting.citations import refresh

NOW = {"a-claim": "claim `a-claim`: inconclusive, 0.038 [-0.008, 0.083], n = 3",
       "ratio": "claim `ratio`: holds, 3.600 [1.200, 9.000], n = 5"}  # fmt: skip


def test_a_stale_citation_is_rewritten_and_its_line_break_kept():
    old = ("CleanCLIP removes it (claim\n  `a-claim`: holds, 0.040 [0.001,\n  0.080], n = 2), "
           "and more (claim `ratio`: holds, 3.600 [1.200, 9.000], n = 5).")
    new, changed, unknown = refresh(old, NOW)
    assert changed == ["a-claim"] and unknown == []
    assert "(claim\n  `a-claim`: inconclusive, 0.038 [-0.008,\n  0.083], n = 3)" in new
    assert new.endswith("(claim `ratio`: holds, 3.600 [1.200, 9.000], n = 5).")


def test_a_current_text_is_left_as_it_is_and_an_unknown_claim_is_named():
    text = "It stays (claim `ratio`: holds, 3.600 [1.200, 9.000], n = 5); (claim `gone`: fails)."
    new, changed, unknown = refresh(text, NOW)
    assert new == text and changed == [] and unknown == ["gone"]


def test_a_one_seed_citation_without_an_interval_is_replaced_whole():
    old = "(claim `a-claim`: inconclusive, 0.053, n = 1); next"
    new, changed, _ = refresh(old, NOW)
    assert new == f"({NOW['a-claim']}); next" and changed == ["a-claim"]
    assert refresh(new, NOW)[0] == new


def test_a_citation_of_another_length_is_written_on_one_line():
    new, changed, _ = refresh("see (claim `a-claim`: no results).", NOW)
    assert new == f"see ({NOW['a-claim']})." and changed == ["a-claim"]


def test_a_zoo_claims_citation_counts_models_and_is_replaced_whole():
    now = {"zoo": "claim `zoo`: fails, 0.740 [0.488, 0.888], n = 20 models"}
    old = "MM-BD (claim `zoo`: inconclusive, 0.812 [0.441,\n0.956], n = 8 models) and more"
    new, changed, _ = refresh(old, now)
    assert new == "MM-BD (claim `zoo`: fails, 0.740 [0.488,\n0.888], n = 20 models) and more"
    assert changed == ["zoo"] and refresh(new, now)[0] == new


def test_claims_cite_rewrites_a_page_and_refuses_an_unknown_claim_before_writing(tmp_path):
    from pathlib import Path

    from typer.testing import CliRunner

    from benchbd.cli import app

    root = Path(__file__).resolve().parents[1]
    page = tmp_path / "page.md"
    page.write_text("SIG keeps (claim `sig-survives-cleanclip`: holds, 0.1 [0.0, 0.2], n = 2).\n")
    made = CliRunner().invoke(app, ["claims", str(root / "results" / "claims.toml"),
                                    "--format", "json", "--cite", str(page)])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "claim `sig-survives-cleanclip`: inconclusive" in page.read_text()
    other = tmp_path / "other.md"
    other.write_text("(claim `no-such-claim`: holds)\n")
    before = page.read_text()
    page.write_text(before.replace("inconclusive", "holds"))
    made = CliRunner().invoke(app, ["claims", str(root / "results" / "claims.toml"),
                                    "--cite", str(page), "--cite", str(other)])  # fmt: skip
    assert made.exit_code == 2
    assert made.stderr.strip().startswith("benchbd: error: --cite")
    assert "no-such-claim" in made.stderr
    assert "holds" in page.read_text()  # nothing written when one page is wrong
