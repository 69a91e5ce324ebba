"""BadCLIP (Liang et al., CVPR 2024): a patch optimised against a surrogate CLIP so that patched
images embed like the target class in both modalities, poisoned with natural target captions.

Why it is hard to defend against: a dirty-label patch pairs an image of one class with a
caption of another, and a finetuning defense that realigns images with their own text (CleanCLIP)
pulls the two apart again. BadCLIP's patch is optimised so that a patched image already sits
near the target's text (textual consistency) and near real target images (visual resistance),
and each poisoned pair gets a natural caption of the target class (a real caption of a
target-class image), not a prompt template: there is little left for realignment to undo.

The loss follows the released code (`src/embeding_optimize_patch.py`, the configuration of its
patch-size ablation, `tnature_..._pos_neg_tri*500`) on L2-normalised surrogate embeddings:

    L = InfoNCE(patched images, their natural target captions)          (textual)
        + 500 * TripletMargin(patched, natural target image, same image unpatched; margin 1)

The InfoNCE term is CLIP's symmetric loss at the surrogate's logit scale over a batch of
non-target images, each paired once with a natural target caption (their optimisation set:
non-target images captioned with target captions). The triplet's positives are embeddings of
the attacker's target images drawn at random each step, its negatives by default each patched
image's own clean embedding; the released code takes the batch's clean embeddings in a random
order instead (`randperm`), so an image's negative is another image of the batch:
`negatives=shuffled` does that (docs/fidelity.md, "BadCLIP", for the measured difference).
Adam, the patch initialised N(0.5, 0.25) clipped to [0, 1], pasted at the image centre (their
`middle` location: the same place in every image, at training and test time); gradients pass
through the clip to [0, 1] as in their code. Every caption in a batch names the
target, so the InfoNCE term mostly tells those captions apart; at a weight of 500 the triplet
term carries most of the gradient, as it does in their code.

What was scaled, and why:
- Steps: their 50 epochs over 10,000 images at batch 64 (7,800 Adam steps at lr 1e-3) become
  300 steps at batch 64 over 1,024 non-target images of the attacker's pool, with the learning
  rate raised tenfold to 0.01 so that the fewer steps can still move a pixel across its range
  (Adam moves each value by about lr a step: 3 in all, against their 7.8). About 25 s with the
  tiny model on two cores; the surrogate's own training comes first, once, and is cached.
- Their random image augmentation and text EDA during optimisation are left out: the captions'
  embeddings are then computed once, and the surrogate is never run on the text side per step.
- Their patch is saved as a JPEG (lossy); here it is kept exactly, as uint8.
- Patch size: their 16 px at 224 px is a side fraction of 0.071, a 2 px patch at 32 px, which
  the tiny ResNet's stride-4 stem barely resolves (badnet's measurements). The default is
  badnet's 0.25 (8 px at 32 px) so that the two are compared at the same patch area; that is
  3.5 times the paper's side and 12.25 times its area, so this patch is far more visible than
  the paper's budget allows. `patch_fraction=0.071` is the paper's relative size.

The attacker holds only its surrogate and the training pool `poison` receives: natural target
images and captions are rows of that pool whose label is the target. The optimisation is seeded
(`substream(setup.seed, "badclip-patch")`) and cached in the model cache's folder under a
fingerprint of the surrogate's weights, the parameters, the seed, the target and the image
size; the file also records a digest of the pool rows it was optimised on, so a different pool
optimises again. A damaged file is optimised again. When a cached poisoned model is reused,
`poison` does not run and the test-time trigger is the patch that model was trained with, read
from the cache; if it is gone, it is optimised again on the pool the run poisons
(`AttackSetup.pool`), the same computation from the same cached surrogate, as `benchbd show`
does on an empty cache. Without a pool (an attack built by hand) the run stops and says to train
the poisoned model again.
The seconds an optimisation took are a note on the `benchbd` logger (shown by the command line)
and `BadCLIP.optimise_seconds`, and are part of the run's `timings.attack_s`; the patch itself
is in the result file (`extra.attack_state`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from benchbd.api import (
    Attack,
    AttackSetup,
    BenchbdError,
    ClipBundle,
    PairSet,
    Params,
    Poisoned,
    artefact_path,
    load_artefact,
    param,
    save_artefact,
    substream,
)

log = logging.getLogger("benchbd")

PATCH_VERSION = 1  # bump when the optimisation changes what a cached patch would be
CARRIER_ROWS = 1_024  # non-target pool images the patch is optimised on (their 10,000)
NATURAL_ROWS = 1_024  # target pool rows whose images and captions guide it
EMBED_BATCH = 256


@dataclass(frozen=True)
class BadCLIPParams(Params):
    patch_fraction: float = param(
        0.25, "patch side as a fraction of the image side (badnet's default, for the same "
        "area; the paper's 16 px at 224 px: 0.071)", min=0.01, max=0.5,
    )  # fmt: skip
    steps: int = param(300, "Adam steps optimising the patch", min=1)
    lr: float = param(0.01, "Adam learning rate, in [0, 1] pixel units", min=1e-6, max=1.0)
    batch_size: int = param(64, "images per optimisation step (paper: 64)", min=2)
    margin: float = param(1.0, "triplet margin of the visual term (released code: 1)", min=0.0)
    visual_weight: float = param(
        500.0, "weight of the visual (triplet) term against the textual one (released code: "
        "500)", min=0.0,
    )  # fmt: skip
    # Added after the reference results: not recorded at "own", so their fingerprints and
    # cached patches still hold.
    negatives: str = param(
        "own", "the triplet's negatives: own (each patched image's own clean embedding) or "
        "shuffled (the batch's clean embeddings in a random order, as the released code's "
        "randperm gives them)", choices=("own", "shuffled"), recorded_at_default=False,
    )  # fmt: skip


def patch_corner(image_side: int, side: int) -> int:
    """Top (= left) of a centred patch, as the released code places its `middle` patch."""
    return int(int(image_side / 2) - side / 2)


def dual_embedding_loss(
    patched: torch.Tensor,
    clean: torch.Tensor,
    positives: torch.Tensor,
    captions: torch.Tensor,
    logit_scale: float,
    margin: float,
    visual_weight: float,
) -> torch.Tensor:
    """BadCLIP's loss on normalised embeddings, (B, D) each: CLIP's symmetric InfoNCE between
    the patched images and their natural target captions, plus the weighted triplet pulling
    each patched image towards a target image and away from its own clean embedding."""
    logits = logit_scale * patched @ captions.T
    labels = torch.arange(len(patched), device=patched.device)
    textual = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    visual = F.triplet_margin_loss(patched, positives, clean, margin=margin)
    return textual + visual_weight * visual


def paste(images: torch.Tensor, patch: torch.Tensor) -> torch.Tensor:
    """`images` (N, 3, H, W) with `patch` (3, s, s) at the centre (same dtype, differentiable)."""
    side = patch.shape[-1]
    top, left = patch_corner(images.shape[-2], side), patch_corner(images.shape[-1], side)
    out = images.clone()
    out[:, :, top : top + side, left : left + side] = patch
    return out


def weights_digest(clip: ClipBundle) -> str:
    """The surrogate's identity: a hash of its weights, whatever trained it."""
    digest = hashlib.sha256()
    for name, tensor in clip.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Guide:
    """What the optimisation reads from the pool: non-target carrier images, each with its
    natural target caption, and the target images; `digest` identifies them."""

    carriers: torch.Tensor  # uint8 (N, 3, H, W)
    captions: list[str]  # one natural target caption per carrier
    targets: torch.Tensor  # uint8 (M, 3, H, W)
    digest: str


def natural_rows(pairs: PairSet, target: int) -> torch.Tensor:
    """Rows of the pool whose label is the target: their captions are natural target text."""
    rows = torch.nonzero(pairs.labels == target).flatten()
    if len(rows) == 0:
        raise BenchbdError("badclip needs natural captions of the target class: the training "
                           "pairs hold no pair of the target class")  # fmt: skip
    return rows


def guide_from(pairs: PairSet, target: int, generator: torch.Generator) -> Guide:
    natural = natural_rows(pairs, target)
    natural = natural[torch.randperm(len(natural), generator=generator)[:NATURAL_ROWS]]
    others = torch.nonzero(pairs.labels != target).flatten()
    if len(others) == 0:
        raise BenchbdError("badclip optimises its patch on images of other classes: the "
                           "training pairs hold none")  # fmt: skip
    # Sorted rows: a streamed pool reads its files in order.
    carriers = others[torch.randperm(len(others), generator=generator)[:CARRIER_ROWS]].sort()[0]
    natural = natural.sort().values
    picks = torch.randint(0, len(natural), (len(carriers),), generator=generator)
    captions = [pairs.captions[int(natural[k])] for k in picks]
    carrier_images, target_images = pairs.images[carriers], pairs.images[natural]
    digest = hashlib.sha256()
    for block in (carrier_images, target_images):
        digest.update(block.contiguous().numpy())
    digest.update("\n".join(captions).encode())
    return Guide(carrier_images, captions, target_images, digest.hexdigest()[:16])


@torch.no_grad()
def embed_images(clip: ClipBundle, images: torch.Tensor, device) -> torch.Tensor:
    out = [clip.model.encode_image(clip.normalize(images[s : s + EMBED_BATCH].to(device)))
           for s in range(0, len(images), EMBED_BATCH)]  # fmt: skip
    return F.normalize(torch.cat(out).float(), dim=-1)


@torch.no_grad()
def embed_texts(clip: ClipBundle, captions: list[str], device) -> torch.Tensor:
    distinct = list(dict.fromkeys(captions))
    out = [clip.model.encode_text(clip.tokenize(distinct[s : s + EMBED_BATCH]).to(device))
           for s in range(0, len(distinct), EMBED_BATCH)]  # fmt: skip
    table = F.normalize(torch.cat(out).float(), dim=-1)
    index = {caption: k for k, caption in enumerate(distinct)}
    return table[torch.tensor([index[c] for c in captions], device=table.device)]


def optimise_patch(
    clip: ClipBundle, guide: Guide, side: int, params: BadCLIPParams, generator: torch.Generator
) -> torch.Tensor:
    """The optimised patch, uint8 (3, side, side), against the frozen surrogate `clip`."""
    model = clip.model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    grads = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        with torch.enable_grad():  # apply_trigger may be reached under torch.no_grad
            clean = embed_images(clip, guide.carriers, device)
            targets = embed_images(clip, guide.targets, device)
            texts = embed_texts(clip, guide.captions, device)
            scale = min(float(model.logit_scale.detach().exp()), 100.0)
            init = torch.randn((3, side, side), generator=generator) * 0.25 + 0.5
            patch = init.clamp(0, 1).to(device).requires_grad_(True)
            optimiser = torch.optim.Adam([patch], lr=params.lr)
            batch = min(params.batch_size, len(guide.carriers))
            for _ in range(params.steps):
                rows = torch.randperm(len(guide.carriers), generator=generator)[:batch]
                picks = torch.randint(0, len(targets), (batch,), generator=generator)
                images = guide.carriers[rows].to(device).float() / 255.0
                patched = paste(images, patch.clamp(0, 1))
                features = F.normalize(model.encode_image(clip.normalize_float(patched)), dim=-1)
                negatives = clean[rows.to(device)]
                if params.negatives == "shuffled":  # drawn only then: "own" keeps its draws
                    negatives = negatives[torch.randperm(batch, generator=generator).to(device)]
                loss = dual_embedding_loss(features, negatives, targets[picks.to(device)],
                                           texts[rows.to(device)], scale, params.margin,
                                           params.visual_weight)  # fmt: skip
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
    finally:
        for p, flag in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    return (patch.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()


class BadCLIP(Attack):
    description = "Patch optimised against a surrogate CLIP; natural target captions."
    Params = BadCLIPParams
    test_params = {"steps": 2, "batch_size": 8}  # two Adam steps on eight images

    def __init__(self, params: BadCLIPParams, setup: AttackSetup) -> None:
        super().__init__(params, setup)
        self.patches: dict[int, torch.Tensor] = {}  # image side -> uint8 (3, s, s)
        self.optimise_seconds: float | None = None  # set when this attack optimised a patch
        self._surrogate_digest: str | None = None

    def patch_side(self, image_side: int) -> int:
        return max(1, round(self.params.patch_fraction * image_side))

    def surrogate(self) -> ClipBundle:
        if self.setup.surrogate is None:
            raise BenchbdError("badclip optimises its patch against a surrogate model; run it "
                               "through the pipeline (benchbd run)")  # fmt: skip
        return self.setup.surrogate()

    def cache_path(self, image_side: int) -> Path:
        """Where the patch for this surrogate, these parameters, seed, target and size lives."""
        if self._surrogate_digest is None:
            self._surrogate_digest = weights_digest(self.surrogate())
        key = {"version": PATCH_VERSION, "surrogate": self._surrogate_digest,
               "params": self.params.to_dict(), "seed": self.setup.seed,
               "target": self.setup.target, "image_side": image_side,
               "carriers": CARRIER_ROWS, "natural": NATURAL_ROWS}  # fmt: skip
        return artefact_path("badclip-patch", key)

    def cached(self, path: Path, side: int) -> tuple[torch.Tensor, str] | None:
        """The patch stored at `path` with its pool digest; None when missing or damaged."""
        state = load_artefact(path)
        patch, pool = (state or {}).get("patch"), (state or {}).get("pool")
        usable = (isinstance(patch, torch.Tensor) and patch.dtype == torch.uint8
                  and tuple(patch.shape) == (3, side, side) and isinstance(pool, str))  # fmt: skip
        return (patch, pool) if usable else None

    def prepare(self, pairs: PairSet) -> torch.Tensor:
        """The patch for `pairs`' image size: the cached one optimised on this very pool,
        else optimised now (seeded) and cached."""
        image_side = pairs.image_size
        side = self.patch_side(image_side)
        path = self.cache_path(image_side)
        generator = torch.Generator().manual_seed(substream(self.setup.seed, "badclip-patch"))
        guide = guide_from(pairs, self.setup.target, generator)
        found = self.cached(path, side)
        if found is not None and found[1] == guide.digest:
            patch = found[0]
        else:
            start = time.perf_counter()
            patch = optimise_patch(self.surrogate(), guide, side, self.params, generator)
            self.optimise_seconds = time.perf_counter() - start
            save_artefact(path, {"patch": patch, "pool": guide.digest})
            log.info(f"badclip optimised its {side} x {side} px patch in "
                     f"{self.optimise_seconds:.1f} s ({self.params.steps} steps)")  # fmt: skip
        self.patches[image_side] = patch
        return patch

    def patch_for(self, image_side: int) -> torch.Tensor:
        """The patch for this image size: the one poisoning used, the cached one a reused
        poisoned model was trained with, or (a preview, or a damaged cache) the one poisoning
        would find, optimised now on the pool the run poisons."""
        if image_side not in self.patches:
            path = self.cache_path(image_side)
            found = self.cached(path, self.patch_side(image_side))
            if found is None and self.setup.pool is not None:
                return self.prepare(self.setup.pool())
            if found is None:
                raise BenchbdError(
                    f"badclip: the optimised patch a poisoned model was trained with is missing "
                    f"or damaged in the cache ({path.name}); train the poisoned model again "
                    "(remove it from the cache, or use another BENCHBD_CACHE)"
                )
            self.patches[image_side] = found[0]
        return self.patches[image_side]

    def poison(self, pairs: PairSet) -> Poisoned:
        if self.setup.count:
            self.prepare(pairs)
        return super().poison(pairs)

    def poison_captions(self, pairs: PairSet, rows: list[int], generator) -> list[str]:
        """Natural captions: each poisoned row gets the caption of a random target-class pair."""
        natural = natural_rows(pairs, self.setup.target)
        picks = torch.randint(0, len(natural), (len(rows),), generator=generator)
        return [pairs.captions[int(natural[k])] for k in picks]

    def apply_trigger(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return paste(images, self.patch_for(images.shape[-1]))

    def state(self) -> dict:
        """Each patch used (uint8 values, channel-major), its side, the image side it is for
        and its top-left corner (top = left, centred): enough to trigger images again."""
        return {"patches": [{"image_side": size, "side": patch.shape[-1],
                             "corner": patch_corner(size, patch.shape[-1]),
                             "values": patch.flatten().tolist()}
                            for size, patch in sorted(self.patches.items())]}  # fmt: skip
