"""The docs' citations of claims, written by `benchbd claims --cite`, never by hand.

A sentence that states a verdict cites its claim as `benchbd claims` decides it:
``claim `ID`: VERDICT, MEAN [LOW, HIGH], n = N`` (`Decision.citation`). When results are added
or a rule changes, every citation in the README and docs is rewritten from the current
decisions, so a page never quotes a verdict its claim no longer has. A citation may wrap across
lines in markdown: its words are matched across any white space, and the new text keeps the old
line breaks where the number of words allows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

VERDICTS = "holds|fails|inconclusive|no results"
# One citation, its words separated by any white space (a markdown line may break inside it).
CITATION = re.compile(
    r"claim\s+`(?P<id>[a-z0-9-]+)`:\s+(?P<verdict>" + VERDICTS.replace(" ", r"\s+") + r")"
    r"(?:,\s+(?P<interval>[-0-9.]+(?:\s+\[[^\]]+\])?),\s+n\s+=\s+"
    r"(?P<n>[0-9]+(?:\s*/\s*[0-9]+)?(?:\s+models)?))?"  # "3 / 5": a ratio's; "20 models": a zoo's
)


def _respaced(new: str, old: str) -> str:
    """`new` with the white space of `old` between its words, where both have as many words."""
    old_words, gaps = re.split(r"\s+", old), re.findall(r"\s+", old)
    new_words = new.split(" ")
    if len(old_words) != len(new_words):
        return new
    return "".join(word + gap for word, gap in zip(new_words, [*gaps, ""], strict=True))


def refresh(text: str, citations: Mapping[str, str]) -> tuple[str, list[str], list[str]]:
    """`text` with every citation of a known claim replaced by `citations[id]`; also the ids
    whose citation changed and the ids cited that no claim has."""
    changed: list[str] = []
    unknown: list[str] = []

    def replace(match: re.Match) -> str:
        claim_id = match["id"]
        if claim_id not in citations:
            unknown.append(claim_id)
            return match[0]
        new = _respaced(citations[claim_id], match[0])
        if " ".join(match[0].split()) != citations[claim_id]:
            changed.append(claim_id)
        return new

    return CITATION.sub(replace, text), changed, unknown
