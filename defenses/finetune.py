"""Plain contrastive finetuning on clean pairs: the baseline every CLIP defense must beat.

It is the CleanCLIP recipe with inmodal_weight = 0 (CleanCLIP's paper shows that this alone
barely weakens a backdoor).
"""

from __future__ import annotations

from benchbd.defenses.cleanclip import CleanCLIP, FinetuneParams


class Finetune(CleanCLIP):
    description = "Contrastive finetuning on clean pairs (CleanCLIP recipe, no in-modal term)."
    Params = FinetuneParams

    def weights(self) -> tuple[float, float]:
        return 1.0, 0.0
