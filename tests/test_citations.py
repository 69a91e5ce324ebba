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


def test_a_citation_of_another_length_is_written_on_one_line():
    new, changed, _ = refresh("see (claim `a-claim`: no results).", NOW)
    assert new == f"see ({NOW['a-claim']})." and changed == ["a-claim"]
