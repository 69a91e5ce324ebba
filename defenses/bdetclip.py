"""BDetCLIP (Niu et al., ICML 2025): contrastive prompting, black-box test-time detection.

A clean image's similarity to class-related ("benign") descriptions of the classes clearly
exceeds its similarity to class-perturbed ("malignant") ones, which join a class prompt to a
sentence unrelated to the class; a triggered image, pulled toward the target by the trigger
alone, responds to the difference far less. As the authors' code computes it (BDetCLIP's
`get_zeroshot_metrics`): per class, the benign descriptions' L2-normalised text embeddings
averaged and renormalised (T1), likewise the malignant prompts'
`template(c).replace('.', ',') + ' ' + unrelated_sentence` (T2); the image's L2-normalised
embedding v; `diff = (v @ T1 - v @ T2).sum(classes)`; an image is flagged when diff is below a
threshold. The score is -diff (higher = more likely triggered).

Deviation (docs/fidelity.md): the authors have GPT-4 write the benign descriptions of each
class and the unrelated sentences; no language model is reachable here, so the benign
descriptions are the class's own prompt templates filled with its name and each of its
synonyms, and the unrelated sentences come from the fixed list below, one per class drawn with
the run's defense seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchbd.api import (
    ClipBundle,
    DefenseContext,
    InputDetector,
    Params,
    ZeroShotTask,
    encode_images,
    param,
    substream,
)

# Sentences about nothing any class of an image set names: the malignant half of each prompt.
UNRELATED = (
    "The train to the coast left the station ten minutes late.",
    "She wrote the shopping list on the back of an envelope.",
    "Interest rates were left unchanged at the last meeting.",
    "The committee postponed the vote until after the holidays.",
    "He hummed an old song while the kettle boiled.",
    "The museum opens an hour later on Sundays.",
    "Rain is expected to clear by the middle of the afternoon.",
    "The novel was translated into twelve languages.",
    "They argued for an hour about the rules of the board game.",
    "The parcel was delivered to the wrong address twice.",
    "Tickets for the concert sold out within minutes.",
    "The old bridge was closed for repairs all summer.",
    "Her grandmother kept every letter she ever received.",
    "The meeting notes were shared with everyone the next morning.",
    "A new bakery opened at the corner of the square.",
    "The football match went to extra time and penalties.",
)


@dataclass(frozen=True)
class BDetCLIPParams(Params):
    synonyms: bool = param(True, "benign descriptions also name each synonym of the class")


def benign_descriptions(task: ZeroShotTask, classname: str, synonyms: bool) -> list[str]:
    """The class-related descriptions: every prompt template filled with the class name and,
    with `synonyms`, with each of its synonyms (in place of the authors' GPT-4 descriptions)."""
    names = [classname, *(task.synonyms.get(classname, []) if synonyms else [])]
    texts = [text for name in dict.fromkeys(names) for text in task.prompts(name)]
    return list(dict.fromkeys(texts))


def malignant_descriptions(task: ZeroShotTask, classname: str, sentence: str) -> list[str]:
    """The class-perturbed descriptions, as the authors build them: each prompt template with
    its full stop turned into a comma, then the unrelated sentence, lower-cased."""
    return [f"{prompt.replace('.', ',')} {sentence.lower()}" for prompt in task.prompts(classname)]


@torch.no_grad()
def class_embedding(clip: ClipBundle, texts: list[str]) -> torch.Tensor:
    """The mean of the texts' L2-normalised embeddings, renormalised (D,), on the CPU."""
    device = next(clip.model.parameters()).device
    features = clip.model.encode_text(clip.tokenize(texts).to(device)).float()
    return F.normalize(F.normalize(features, dim=-1).mean(dim=0), dim=0).cpu()


def contrast(features: torch.Tensor, benign: torch.Tensor, malignant: torch.Tensor) -> torch.Tensor:
    """(N, D) normalised image features, (D, C) benign and malignant class embeddings -> (N,)
    the authors' diff, summed over classes."""
    return (features @ benign - features @ malignant).sum(dim=1)


class BDetCLIP(InputDetector):
    Params = BDetCLIPParams
    description = ("Input detection: an image closer to malignant than to benign class "
                   "descriptions is flagged (BDetCLIP; descriptions from templates).")  # fmt: skip

    def fit(self, clip: ClipBundle, context: DefenseContext) -> None:
        task = context.task
        generator = torch.Generator().manual_seed(substream(context.seed, "bdetclip-sentences"))
        picks = torch.randint(0, len(UNRELATED), (len(task.classnames),), generator=generator)
        self.benign = torch.stack([class_embedding(clip, benign_descriptions(
            task, name, self.params.synonyms)) for name in task.classnames], dim=1)  # fmt: skip
        self.malignant = torch.stack([class_embedding(clip, malignant_descriptions(
            task, name, UNRELATED[int(k)])) for name, k in zip(task.classnames, picks,
                                                                strict=True)], dim=1)  # fmt: skip

    def score(self, clip: ClipBundle, images: torch.Tensor,
              context: DefenseContext) -> torch.Tensor:  # fmt: skip
        return -contrast(encode_images(clip, images), self.benign, self.malignant)
