"""Fidelity of CleanCLIP (Bansal et al., ICCV 2023) and its variants: the loss, the schedule, the
optimizer's groups, the AutoAugment and EDA views, and the supervised head, through benchbd and
through an independent re-derivation of nishadsinghi/CleanCLIP's code (commit d6e2f1d).

`python tests/test_fidelity_cleanclip.py` prints the measured effect of the text-side
deviations (docs/fidelity.md, "CleanCLIP and its variants").
"""

from __future__ import annotations

import collections
import math
import random
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from benchbd.defenses.cleanclip import CleanCLIP, CleanCLIPParams, InModal
from benchbd.defenses.finetune import Finetune
from benchbd.defenses.supervised import LinearHead, head_loss
from torchvision import transforms as T

from benchbd.core.seeds import substream
from benchbd.engine.augment import STOPWORDS, ImageViews, TextViews, table_synonyms
from benchbd.engine.model import create_clip
from benchbd.engine.objectives import ClipInModalObjective, clip_inmodal_loss
from benchbd.engine.train import Batch, build_optimizer, lr_at

# --- the loss --------------------------------------------------------------------------------


def ref_get_loss(image_embeds, text_embeds, logit_scale, inmodal, clip_weight, inmodal_weight):
    """nishadsinghi/CleanCLIP src/train.py, get_loss (lines 9-15, 56-74), one process, no
    unlearning: with inmodal the embeddings are [originals; augmented views] halves; the loss
    is clip_weight * cross-modal + inmodal_weight * (image-image + text-text) / 2; without
    inmodal, the cross-modal loss alone."""
    criterion = nn.CrossEntropyLoss()
    if inmodal:
        half = len(image_embeds) // 2
        image_embeds, augmented_image_embeds = image_embeds[:half], image_embeds[half:]
        text_embeds, augmented_text_embeds = text_embeds[:half], text_embeds[half:]
    logits_text_per_image = logit_scale.exp() * image_embeds @ text_embeds.t()
    logits_image_per_text = logits_text_per_image.t()
    if inmodal:
        scale = logit_scale.exp()
        logits_image_per_augmented_image = scale * image_embeds @ augmented_image_embeds.t()
        logits_text_per_augmented_text = scale * text_embeds @ augmented_text_embeds.t()
    target = torch.arange(len(logits_text_per_image)).long()
    crossmodal = (criterion(logits_text_per_image, target)
                  + criterion(logits_image_per_text, target)) / 2  # fmt: skip
    if not inmodal:
        return crossmodal
    inmodal_loss = (criterion(logits_image_per_augmented_image, target)
                    + criterion(logits_text_per_augmented_text, target)) / 2  # fmt: skip
    return clip_weight * crossmodal + inmodal_weight * inmodal_loss


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


@pytest.mark.parametrize(("clip_weight", "inmodal_weight"), [(1.0, 1.0), (0.0, 1.0), (2.0, 0.5)])
def test_cleanclip_loss_is_the_references(clip_weight, inmodal_weight):
    image, text, image_views, text_views = (unit(8, 16, s) for s in range(4))
    scale = torch.tensor(math.log(100.0))
    ours = clip_inmodal_loss(image, text, image_views, text_views, scale.exp(), clip_weight,
                             inmodal_weight)  # fmt: skip
    ref = ref_get_loss(torch.cat([image, image_views]), torch.cat([text, text_views]), scale,
                       True, clip_weight, inmodal_weight)  # fmt: skip
    assert torch.allclose(ours, ref, rtol=1e-6, atol=1e-6)


def test_finetune_loss_is_the_references_clip_loss():
    """`finetune` (inmodal_weight 0) is the reference run without --inmodal."""
    image, text = unit(8, 16, 0), unit(8, 16, 1)
    scale = torch.tensor(math.log(30.0))
    ours = clip_inmodal_loss(image, text, None, None, scale.exp(), 1.0, 0.0)
    assert torch.allclose(ours, ref_get_loss(image, text, scale, False, 1.0, 0.0), rtol=1e-6)


def test_the_variants_weights():
    assert CleanCLIP(CleanCLIPParams()).weights() == (1.0, 1.0)
    assert Finetune(Finetune.Params()).weights() == (1.0, 0.0)
    assert InModal(InModal.Params()).weights() == (0.0, 1.0)


def test_objective_feeds_views_through_the_model_as_the_reference_does(tiny_data):
    """The reference concatenates [images; augmented images] and [captions; augmented
    captions] into one forward pass (src/train.py lines 155-160, 173) and splits the halves in
    get_loss; benchbd's objective on the same views must give the same loss."""
    clip = create_clip(seed=0)
    clip.model.eval()  # batch norm in eval mode, so both forward passes see the same statistics
    pairs = tiny_data.clean
    images, captions = pairs.images[:8], pairs.captions[:8]
    batch = Batch(images, captions, clip.tokenize(captions), pairs.labels[:8], step=3)
    views = TextViews(table_synonyms(tiny_data.task.synonym_groups))
    objective = ClipInModalObjective(1.0, 1.0, views, seed=11)
    with torch.no_grad():
        ours = objective(clip, batch)
        step_seed = substream(11, "views:3")
        image_views = ImageViews()(images, step_seed)
        text_views = views(captions, step_seed)
        out = clip.model(clip.normalize(torch.cat([images, image_views])),
                         clip.tokenize(captions + text_views))  # fmt: skip
        ref = ref_get_loss(out["image_features"], out["text_features"],
                           clip.model.logit_scale, True, 1.0, 1.0)  # fmt: skip
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-5)


# --- the schedule and the optimizer ----------------------------------------------------------


def ref_cosine_scheduler(base_lr: float, num_warmup_steps: int, total_steps: int):
    """CleanCLIP src/scheduler.py lines 3-15: the lr at a step."""

    def lr(current_step: int) -> float:
        if current_step < num_warmup_steps:
            return base_lr * (current_step + 1) / num_warmup_steps
        n = current_step - num_warmup_steps
        d = total_steps - num_warmup_steps
        return 0.5 * (1 + np.cos(np.pi * n / d)) * base_lr

    return lr


def ref_steps(num_batches: int, epochs: int, start_epoch: int = 0) -> list[int]:
    """The steps the reference hands its scheduler: src/main.py line 162 runs epochs
    start_epoch + 1 .. epochs, and src/train.py line 150 numbers steps num_batches * epoch +
    index, so a fresh finetune (start_epoch 0) starts at step num_batches."""
    return [num_batches * epoch + index for epoch in range(start_epoch + 1, epochs + 1)
            for index in range(num_batches)]  # fmt: skip


@pytest.mark.parametrize(("total", "warmup"), [(195, 20), (1562 * 10, 50), (40, 10)])
def test_schedule_formula_is_the_references(total, warmup):
    ref = ref_cosine_scheduler(1e-5, warmup, total)
    for step in range(total):
        assert math.isclose(lr_at(step, total, 1e-5, warmup), ref(step), rel_tol=1e-12,
                            abs_tol=1e-20)  # fmt: skip


def test_the_references_step_count_skips_warmup_and_overshoots_the_cosine():
    """The paper's recipe on 100K pairs at batch 64 (1,562 batches, 10 epochs, 50 warmup
    steps): the reference's first step is past its warmup and its last is a full epoch past
    the cosine's end, where the lr has risen again; benchbd steps 0 .. total - 1 (listed)."""
    batches, epochs, warmup = 1562, 10, 50
    total = batches * epochs
    ref = ref_cosine_scheduler(1e-5, warmup, total)
    steps = ref_steps(batches, epochs)
    assert steps[0] == batches > warmup
    assert steps[-1] == total + batches - 1
    assert ref(steps[0]) > 0.95e-5  # no warmup: the first step near the full lr
    assert ref(steps[-1]) > ref(total - 1) and ref(steps[-1]) > 0.02e-5  # risen again
    ours = [lr_at(step, total, 1e-5, warmup) for step in range(total)]
    assert ours[0] == 1e-5 / warmup and ours[-1] < 1e-12


def test_warmup_is_capped_at_half_the_steps():
    """benchbd caps the warmup at total // 2 (listed: a short run still gets its cosine); the
    reference's formula would warm up past the end."""
    ref = ref_cosine_scheduler(1.0, 100, 40)
    assert ref(39) == 0.4 and lr_at(39, 40, 1.0, 100) < 0.01


def ref_weight_decay_names(model: nn.Module) -> tuple[set[str], set[str]]:
    """CleanCLIP src/main.py lines 100-110: no weight decay where the parameter's name holds
    "bn", "ln", "bias" or "logit_scale"; decay on every other parameter."""
    keys = ["bn", "ln", "bias", "logit_scale"]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    decay = {n for n in names if all(key not in n for key in keys)}
    return decay, set(names) - decay


def test_weight_decay_groups_are_the_references_but_for_unnamed_norms():
    """The same groups, except the batch norms the reference's name test misses (a ResNet's
    downsample.1, the only 1-D weights without "bn" in their name): benchbd exempts every 1-D
    parameter (listed)."""
    clip = create_clip(seed=0)
    optimizer = build_optimizer(clip.model, 1e-3, 0.1)
    ids = {id(p): n for n, p in clip.model.named_parameters()}
    decay = {ids[id(p)] for p in optimizer.param_groups[0]["params"]}
    no_decay = {ids[id(p)] for p in optimizer.param_groups[1]["params"]}
    assert optimizer.param_groups[0]["weight_decay"] == 0.1
    assert optimizer.param_groups[1]["weight_decay"] == 0.0
    ref_decay, ref_no_decay = ref_weight_decay_names(clip.model)
    moved = ref_decay - decay
    assert moved == ref_no_decay ^ no_decay and moved == no_decay - ref_no_decay
    assert moved and all(n.endswith("downsample.1.weight") for n in moved)
    # Adam's constants: CleanCLIP's parser defaults are (0.9, 0.999) and 1e-8 (src/parser.py
    # lines 40-42); benchbd uses CLIP's (0.9, 0.98) and 1e-6 for every stage (listed).
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.98) and optimizer.defaults["eps"] == 1e-6


# --- AutoAugment -----------------------------------------------------------------------------


def test_image_views_use_the_references_autoaugment_policy():
    """CleanCLIP utils/augment_image.py line 12: torchvision.transforms.AutoAugment(), whose
    default policy is IMAGENET: the same 25 sub-policies benchbd draws from."""
    ours = ImageViews().transform
    ref = T.AutoAugment()
    assert ref.policy == T.AutoAugmentPolicy.IMAGENET
    assert [tuple(p) for p in ours._policies] == [tuple(p) for p in ref.policies]


def test_every_autoaugment_operation_is_the_references_within_one_level():
    """Each of the policy's operations at its magnitude (both signs where signed): benchbd's
    torchvision v2 operation on a uint8 tensor against the reference's v1 operation on a PIL
    image (utils/augment_image.py lines 12-17). Geometric operations agree pixel for pixel;
    colour, contrast and the like by at most one level (Pillow's rounding). Both sides are
    reached through torchvision's private helpers (`_apply_op`, v2's
    `_apply_image_or_video_transform`), which is what each AutoAugment calls per operation."""
    from PIL import Image
    from torchvision.transforms.autoaugment import _apply_op

    image = torch.randint(0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)  # fmt: skip
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    ours, ref = ImageViews().transform, T.AutoAugment()
    space = ref._augmentation_space(10, (32, 32))
    exact = total = 0
    for policy in ref.policies:
        for name, _, bin_index in policy:
            magnitudes, signed = space[name]
            our_bins = ours._AUGMENTATION_SPACE[name][0](10, 32, 32)
            theirs = float(magnitudes[bin_index]) if bin_index is not None else 0.0
            mine = float(our_bins[bin_index]) if our_bins is not None and our_bins.ndim else 0.0
            for sign in (1, -1) if signed else (1,):
                expected = _apply_op(pil, name, sign * theirs, interpolation=ref.interpolation,
                                     fill=ref.fill)  # fmt: skip
                expected = torch.from_numpy(np.array(expected)).permute(2, 0, 1)
                got = ours._apply_image_or_video_transform(
                    image, name, sign * mine, interpolation=ours.interpolation, fill=ours._fill
                )
                difference = (got.int() - expected.int()).abs().max()
                assert difference <= 1, (name, bin_index, sign)
                exact += int(difference == 0)
                total += 1
    assert total == 66 and exact >= 50


def test_image_views_share_one_draw_per_group_of_eight():
    """The reference augments each image on its own (data.py line 64, per __getitem__); benchbd
    draws one sub-policy per group of 8 images (listed). Eight copies of one image get the
    same view; and views are drawn anew for another step's seed."""
    image = torch.randint(0, 256, (1, 3, 32, 32), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8).expand(16, -1, -1, -1).contiguous()  # fmt: skip
    views = ImageViews()
    found = [views(image, seed) for seed in range(12)]
    for out in found:
        assert torch.equal(out[:8], out[:1].expand(8, -1, -1, -1))
    assert any(not torch.equal(out[0], out[8]) for out in found)
    assert len({out[0].numpy().tobytes() for out in found}) > 3


# --- EDA ------------------------------------------------------------------------------------


class RefEDA:
    """nishadsinghi/CleanCLIP utils/eda.py (Wei & Zou's EDA), with the module-level `random`
    replaced by `rng` and WordNet by a synonym function, so both sides can draw from one
    seeded generator and one synonym table."""

    stop_words = {"i", "a", "an", "the", "of", "on", "in", "at", "to", "is", "there", "and",
                  "or", "with", "over", "this", "that", "it", "its"}  # fmt: skip

    def __init__(self, synonyms, rng: random.Random) -> None:
        self.synonyms, self.rng = synonyms, rng

    def synonym_replacement(self, words, n):  # lines 63-81
        # list(set(...)) there: an order that varies with the hash seed, shuffled anyway;
        # first-seen order here, so a seed gives one output.
        new_words = words.copy()
        random_word_list = list(dict.fromkeys(w for w in words if w not in self.stop_words))
        self.rng.shuffle(random_word_list)
        num_replaced = 0
        for random_word in random_word_list:
            synonyms = self.synonyms(random_word)
            if len(synonyms) >= 1:
                synonym = self.rng.choice(list(synonyms))
                new_words = [synonym if word == random_word else word for word in new_words]
                num_replaced += 1
            if num_replaced >= n:
                break
        return " ".join(new_words).split(" ")

    def random_deletion(self, words, p):  # lines 99-117
        if len(words) == 1:
            return words
        new_words = [word for word in words if self.rng.uniform(0, 1) > p]
        if len(new_words) == 0:
            return [words[self.rng.randint(0, len(words) - 1)]]
        return new_words

    def random_swap(self, words, n):  # lines 124-140
        new_words = words.copy()
        for _ in range(n):
            idx1 = self.rng.randint(0, len(new_words) - 1)
            idx2, counter = idx1, 0
            while idx2 == idx1:
                idx2 = self.rng.randint(0, len(new_words) - 1)
                counter += 1
                if counter > 3:
                    break
            else:
                new_words[idx1], new_words[idx2] = new_words[idx2], new_words[idx1]
        return new_words

    def random_insertion(self, words, n):  # lines 147-164
        new_words = words.copy()
        for _ in range(n):
            synonyms, counter = [], 0
            while len(synonyms) < 1:
                random_word = new_words[self.rng.randint(0, len(new_words) - 1)]
                synonyms = self.synonyms(random_word)
                counter += 1
                if counter >= 10:
                    break
            else:
                new_words.insert(self.rng.randint(0, len(new_words) - 1), synonyms[0])
        return new_words

    @staticmethod
    def count(num_words: int, alpha: float = 0.1) -> int:  # lines 182, 189, 196
        return max(1, int(alpha * num_words))


def ref_get_only_chars(line: str) -> str:
    """CleanCLIP utils/eda.py lines 34-54, applied to every augmented caption (line 207)."""
    line = line.replace("’", "").replace("'", "").replace("-", " ").replace("\t", " ")
    line = line.replace("\n", " ").lower()
    clean = "".join(c if c in "qwertyuiopasdfghjklzxcvbnm " else " " for c in line)
    clean = re.sub(" +", " ", clean)
    return clean[1:] if clean.startswith(" ") else clean


TABLE = table_synonyms([["circle", "disc"], ["box", "square", "block"], ["red", "crimson"],
                        ["photo", "picture"], ["small", "little", "tiny"]])  # fmt: skip


def test_eda_deletion_is_the_references_with_the_same_draws():
    for seed in range(200):
        caption = "a photo of a small red circle near the box"
        ours = TextViews(TABLE).augment(caption, "delete", random.Random(seed))
        ref = RefEDA(TABLE, random.Random(seed)).random_deletion(caption.split(), 0.1)
        assert ours == " ".join(ref)


def frequencies(outputs: list[str]) -> dict[str, float]:
    counts = collections.Counter(outputs)
    return {k: v / len(outputs) for k, v in counts.items()}


def close(ours: dict[str, float], ref: dict[str, float], tol: float = 0.03) -> bool:
    keys = set(ours) | set(ref)
    return all(abs(ours.get(k, 0) - ref.get(k, 0)) <= tol for k in keys)


def test_eda_swap_and_synonym_replacement_draw_the_references_distribution():
    """Other draws, so compared as distributions over 4,000 seeds: a random pair of positions
    swapped; a random non-stop word replaced by a random synonym (distinct words here: the
    reference replaces every occurrence of the word it picks, benchbd one position)."""
    caption = "a photo of small red circle"
    ours = TextViews(TABLE)
    swaps = [ours.augment(caption, "swap", random.Random(s)) for s in range(4000)]
    ref_swaps = [" ".join(RefEDA(TABLE, random.Random(s)).random_swap(caption.split(), 1))
                 for s in range(4000)]  # fmt: skip
    # The reference gives up after four equal draws ((1/6)^4 of the time): the caption unchanged.
    assert set(ref_swaps) - {caption} == set(swaps) and len(set(swaps)) == 15
    assert close(frequencies(swaps), frequencies(ref_swaps))
    synonyms = [ours.augment(caption, "synonym", random.Random(s)) for s in range(4000)]
    ref_synonyms = [" ".join(RefEDA(TABLE, random.Random(s)).synonym_replacement(
        caption.split(), 1)) for s in range(4000)]  # fmt: skip
    assert set(synonyms) == set(ref_synonyms)
    assert close(frequencies(synonyms), frequencies(ref_synonyms))


def test_eda_insertion_may_also_insert_at_the_end_and_any_synonym():
    """The reference inserts a word's first synonym at randint(0, len - 1), never after the
    last word, and may pick a stop word (retrying up to 10 times); benchbd inserts a random
    synonym of a non-stop word at any of the len + 1 places (listed)."""
    caption = "a small red circle"
    ours = {TextViews(TABLE).augment(caption, "insert", random.Random(s)) for s in range(3000)}
    ref = {" ".join(RefEDA(TABLE, random.Random(s)).random_insertion(caption.split(), 1))
           for s in range(3000)}  # fmt: skip
    assert ref <= ours
    assert any(out.split()[:4] == caption.split() for out in ours - ref)  # appended at the end


def test_eda_counts_agree_below_fifteen_words():
    """n = max(1, int(0.1 L)) in the reference, max(1, round(0.1 L)) here: equal below 15
    words, one more for 15-19 words (listed: benchbd's captions have at most 10)."""
    for length in range(1, 50):
        ours = max(1, round(0.1 * length))
        ref = RefEDA.count(length)
        assert ours == ref or (ours == ref + 1 and round(0.1 * length) > int(0.1 * length))
    assert all(max(1, round(0.1 * n)) == RefEDA.count(n) for n in range(1, 15))
    words = [f"w{i}" for i in range(16)]
    table = table_synonyms([[w, w + "x"] for w in words])
    out = TextViews(table).augment(" ".join(words), "synonym", random.Random(0)).split()
    assert sum(a != b for a, b in zip(out, words, strict=True)) == 2  # the reference: 1


def test_text_views_are_drawn_anew_every_step():
    """The reference draws each caption's EDA view once, when the dataset is built
    (src/data.py line 37): every epoch sees the same view. benchbd draws per step (listed)."""
    views = TextViews(TABLE)
    captions = ["a photo of a small red circle near the box"] * 4
    drawn = {tuple(views(captions, substream(0, f"views:{step}"))) for step in range(20)}
    assert len(drawn) > 5


def test_eda_keeps_case_digits_and_punctuation():
    """The reference lower-cases every augmented caption and drops every character but a-z
    (utils/eda.py line 207): a digit named as a numeral disappears from the view. benchbd
    keeps the caption's characters (listed)."""
    caption = "a scan of the digit 7"
    assert ref_get_only_chars(caption) == "a scan of the digit "
    ours = {TextViews(TABLE).augment(caption, "swap", random.Random(s)) for s in range(50)}
    assert all("7" in out.split() for out in ours)


def test_eda_stop_words_are_a_subset_of_the_references():
    ref = set(
        """i me my myself we our ours ourselves you your yours yourself yourselves he him
    his himself she her hers herself it its itself they them their theirs themselves what which
    who whom this that these those am is are was were be been being have has had having do does
    did doing a an the and but if or because as until while of at by for with about against
    between into through during before after above below to from up down in out on off over
    under again further then once here there when where why how all any both each few more
    most other some such no nor not only own same so than too very s t can will just don should
    now""".split()
    )  # CleanCLIP utils/eda.py lines 10-30
    assert STOPWORDS - ref == {"near", "one"}


# --- the supervised variant (SuFi) ------------------------------------------------------------


def test_supervised_head_loss_is_the_references_on_normalised_features(tiny_data):
    """CleanCLIP src/evaluate.py, Finetune (lines 92-99) and get_finetune_metrics (lines
    166-196): logits = Linear(visual(x)), cross-entropy on labels. benchbd feeds the head
    L2-normalised features (listed); on those, the loss is the reference's."""
    clip = create_clip(seed=0)
    clip.model.eval()
    pairs = tiny_data.clean
    labelled = torch.nonzero(pairs.labels >= 0).flatten()[:8]
    images, labels = pairs.images[labelled], pairs.labels[labelled]
    head = LinearHead(clip.model.visual.output_dim, 10, seed=0)
    batch = Batch(images, [pairs.captions[i] for i in labelled.tolist()],
                  torch.zeros(8, 1, dtype=torch.long), labels, step=0)  # fmt: skip
    with torch.no_grad():
        ours = head_loss(clip, head, batch)
        features = clip.model.encode_image(clip.normalize(images))
        raw_logits = head.linear(features)
        ref_normalised = nn.CrossEntropyLoss()(head.linear(F.normalize(features, dim=-1)), labels)
    assert torch.allclose(ours, ref_normalised, rtol=1e-6)
    assert not torch.allclose(head.linear(F.normalize(features, dim=-1)), raw_logits, rtol=1e-2)


def ref_sufi_decay_names(head: nn.Module, visual: nn.Module) -> set[str]:
    """CleanCLIP src/evaluate.py line 167: weight decay 0.01 on every parameter whose name lacks
    "bias" (batch-norm weights included)."""
    names = [f"head.{n}" for n, _ in head.named_parameters()]
    names += [f"visual.{n}" for n, _ in visual.named_parameters()]
    return {n for n in names if "bias" not in n}


def test_supervised_weight_decay_spares_norms_the_reference_decays():
    clip = create_clip(seed=0)
    head = LinearHead(clip.model.visual.output_dim, 10, seed=0)
    trainable = nn.ModuleDict({"visual": clip.model.visual, "head": head})
    optimizer = build_optimizer(trainable, 1e-3, 0.01)
    ids = {id(p): n for n, p in trainable.named_parameters()}
    decay = {ids[id(p)] for p in optimizer.param_groups[0]["params"]}
    ref = ref_sufi_decay_names(head, clip.model.visual)
    extra = ref - decay  # decayed there, not here: the visual tower's norm weights
    assert decay <= ref and extra
    assert all(dict(trainable.named_parameters())[n].ndim == 1 for n in extra)


# --- measured effects (printed by `python tests/test_fidelity_cleanclip.py`) ------------------


def measure() -> None:  # pragma: no cover - a report, run by hand
    from benchbd.engine.data.sources import load_data
    from benchbd.engine.run_config import default_sizes

    for spec in ("digits", "synthetic"):
        data = load_data(spec, default_sizes(spec), image_size=32)
        captions = data.clean.captions
        lengths = [len(c.split()) for c in captions]
        stripped = sum(ref_get_only_chars(c).split() != c.lower().split() for c in captions)
        lost = 0
        for caption, label in zip(captions, data.clean.labels.tolist(), strict=True):
            if label < 0:
                continue
            names = data.task.names_for(data.task.classnames[label])
            kept = ref_get_only_chars(caption)
            found = [ref_get_only_chars(n).strip() for n in names]
            lost += not any(n and re.search(rf"\b{n}\b", kept) for n in found)
        names = {n for c in data.task.classnames for n in data.task.names_for(c)}
        stopped = sorted(STOPWORDS & names)
        holding = sum(any(w in stopped for w in c.split()) for c in captions) / len(captions)
        print(f"{spec}: class names benchbd's EDA takes for stop words: {stopped}, in "
              f"{holding:.3f} of the clean captions")  # fmt: skip
        print(f"{spec}: {len(captions)} clean captions, longest {max(lengths)} words "
              f"(EDA counts differ from 15); the reference's cleaning changes "
              f"{stripped / len(captions):.3f} of them and removes every word naming the "
              f"class from {lost / len(captions):.3f}")  # fmt: skip
    batches, epochs, warmup, lr = 39, 5, 20, 5e-4  # benchbd's recipe: 5,000 pairs, batch 128
    total = batches * epochs
    ref = ref_cosine_scheduler(lr, warmup, total)
    steps = ref_steps(batches, epochs)
    print(f"schedule at benchbd's recipe: the reference's steps run {steps[0]}..{steps[-1]} of "
          f"{total}; its mean lr {np.mean([ref(s) for s in steps]):.3g} against benchbd's "
          f"{np.mean([lr_at(s, total, lr, warmup) for s in range(total)]):.3g}; its last lr "
          f"{ref(steps[-1]):.3g}")  # fmt: skip


ADAM_RUN = """
import sys
import benchbd  # first: pins the CPU kernels before torch is imported, as the command does
import benchbd.engine.train
import benchbd.defenses.cleanclip
from benchbd.cli import main

standard, train = benchbd.engine.train.build_optimizer, defenses.cleanclip.train

def cleanclips_adam(model, lr, weight_decay):
    optimizer = standard(model, lr, weight_decay)
    for group in optimizer.param_groups:
        group["betas"], group["eps"] = (0.9, 0.999), 1e-8
    return optimizer

def defense_train(*args, **kwargs):
    benchbd.engine.train.build_optimizer = cleanclips_adam
    try:
        return train(*args, **kwargs)
    finally:
        benchbd.engine.train.build_optimizer = standard

defenses.cleanclip.train = defense_train
sys.argv = ["benchbd", "run", "--dataset", "digits", "--split", "validation", "--threads", "1",
            "--seed", "0", "--device", "cpu", "--attack", "badnet", "--defense", "cleanclip",
            "--out", sys.argv[1]]
main()
"""


def run_with_cleanclips_adam(out: str) -> None:  # pragma: no cover - a measurement
    """One digits run of CleanCLIP (badnet, validation split, seed 0, one thread) whose
    defense stage uses CleanCLIP's Adam constants (betas 0.9 / 0.999, eps 1e-8); pretraining
    is untouched (the cached poisoned model), and nothing is cached from the defense. A fresh
    interpreter, so that benchbd pins its kernels before torch is imported."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", ADAM_RUN, out], check=True)


if __name__ == "__main__":  # pragma: no cover
    import sys

    if sys.argv[1:2] == ["adam"]:
        run_with_cleanclips_adam(sys.argv[2])
    else:
        measure()
