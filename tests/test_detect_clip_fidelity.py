"""Detect-CLIP's detectors (Huang et al., ICLR 2025) against their authors' computation.

Each `authors_*` function below is an independent re-derivation, in torch, of the scoring code
of HanxunH/Detect-CLIP-Backdoor-Samples (commit ff2399a), file and lines named at each. It
takes what that code takes: the batch's image features V and, in the image-text setting, its
caption features T, raw (`encode_image` / `encode_text` without normalisation, as
extract_bd_scores.py calls them); the batch is its own reference set. benchbd's score
functions receive the same numbers as queries, a reference matrix and each query's own rows,
and must agree to float tolerance wherever docs/fidelity.md lists no deviation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from benchbd.defenses.dao import DAO
from benchbd.defenses.iforest import IsolationForestScreen
from benchbd.defenses.kdistance import KDistance
from benchbd.defenses.lof import LocalOutlier
from benchbd.defenses.screening import own_rows, reference_set
from benchbd.defenses.slof import SLOF

from benchbd.core.params import build
from benchbd.engine.model import create_clip
from benchbd.engine.plugins import DefenseContext, TrainingPairs

EXACT = "donot_use_mm_for_euclid_dist"  # extract_bd_scores.py line 108: exact distances


def pairwise_without_own(data: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """k_distance.py lines 6-13 (`get_pair_wise_distance`, one process: offset 0): all
    distances from each row of `data` to `reference`, the diagonal (row i to reference i)
    removed, so (b, R - 1)."""
    b = data.shape[0]
    r = torch.cdist(data, reference, p=2, compute_mode=EXACT)
    mask = torch.zeros((b, reference.shape[0]), dtype=torch.bool)
    mask = torch.diagonal_scatter(mask, torch.ones(b, dtype=torch.bool), 0)
    return r[~mask].view(b, -1)


def authors_sorted(v: torch.Tensor, t: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """k_distance.py lines 24-47: the sorted distances (and their column indices) from each
    image to the other images and, with captions, to the other captions (own caption left out
    by the same diagonal mask), the two blocks side by side."""
    if t is None:
        d = pairwise_without_own(v, v)
    else:
        d = torch.cat([pairwise_without_own(v, v), pairwise_without_own(v, t)], dim=1)
    return torch.sort(d, dim=1)


def authors_kdistance(v: torch.Tensor, t: torch.Tensor | None, k: int) -> np.ndarray:
    """k_distance.py line 48: `a[:, self.k]`, 0-indexed after the own rows are removed."""
    a, _ = authors_sorted(v, t)
    return a[:, k].numpy()


def true_rows(idx: torch.Tensor, images: int) -> torch.Tensor:
    """The reference rows (images at 0..B-1, captions at B..2B-1) that `authors_sorted`'s
    column indices stand for: a column past row i's own image (or own caption) is one row on."""
    rows = torch.arange(idx.shape[0]).unsqueeze(1)
    block, column = idx // (images - 1), idx % (images - 1)
    return block * images + column + (column >= rows).long()


def authors_neighbour_reaches(v, t, k, idx):
    """slof.py lines 49-59 (dao.py lines 61-77 alike): every reference's sorted distances to
    the whole reference set, itself included (`a_full_d`), and each query's k neighbours'
    entry at 0-based position k. The public code indexes the reference rows by `idx`, the
    columns of the own-rows-removed matrix."""
    full = v if t is None else torch.cat([v, t], dim=0)
    a_full_d, _ = torch.sort(torch.cdist(full, full, compute_mode=EXACT), dim=1)
    rows = idx[:, :k]
    d_k = torch.stack([torch.index_select(a_full_d, 0, row) for row in rows])[:, :, k]
    return a_full_d, d_k


def authors_slof(v, t, k, shifted: bool = True) -> np.ndarray:
    """slof.py lines 47-64. `shifted=False` looks the neighbours up at their true rows (the one
    deviation docs/fidelity.md lists); everything else is the public code's."""
    a, idx = authors_sorted(v, t)
    if not shifted:
        idx = true_rows(idx, len(v))
    _, d_k = authors_neighbour_reaches(v, t, k, idx)
    scores = (a[:, k].unsqueeze(-1) / d_k).mean(dim=1)
    return torch.nan_to_num(scores, nan=1000.0, posinf=1000.0, neginf=0.0).numpy()


def authors_dao(v, t, k, shifted=True, query_position=None, lid_with_self=True) -> np.ndarray:
    """dao.py lines 53-86 (est_type 'mle', modality 'vision'). The switches undo the
    deviations docs/fidelity.md lists for benchbd's textbook DAO: `shifted` (neighbours at
    their columns, not their rows), `query_position` (the query's reach at 0-based position k,
    its (k+1)-th neighbour, where the neighbours' is their k-th), `lid_with_self` (each
    neighbour's LID counts its distance 0 to itself, a log(1e-4) term, and leaves out its k-th
    neighbour)."""
    query_position = k if query_position is None else query_position
    a, idx = authors_sorted(v, t)
    if not shifted:
        idx = true_rows(idx, len(v))
    a_full_d, d_k = authors_neighbour_reaches(v, t, k, idx)
    near = a_full_d[:, :k] if lid_with_self else a_full_d[:, 1 : k + 1]
    lids = -k / torch.sum(torch.log(near / a_full_d[:, k].unsqueeze(-1) + 1.0e-4), dim=1)
    lid_k = torch.stack([torch.index_select(lids, 0, row) for row in idx[:, :k]])
    scores = lid_k * torch.log(a[:, query_position].unsqueeze(-1) / d_k)
    scores = scores.mean(dim=1)
    return torch.nan_to_num(scores, nan=1000.0, posinf=1000.0, neginf=0.0).numpy()


def authors_iforest(v, t, seed: int) -> np.ndarray:
    """isolation_forest.py lines 14-37 (100 trees fitted on the images, or the images and the
    captions, scoring the images) and process_detection_scores.py lines 176-178 (negated:
    higher is more suspicious). The public code leaves the forest unseeded; here it gets the
    seed benchbd gives it, so the two forests are the same."""
    from sklearn.ensemble import IsolationForest

    references = v if t is None else torch.cat([v, t], dim=0)
    forest = IsolationForest(n_estimators=100, random_state=seed).fit(references.numpy())
    return -forest.score_samples(v.numpy())


def random_features(n: int = 60, d: int = 12, seed: int = 0, spread: float = 0.3):
    """Raw features whose norms spread by about `spread`, as raw CLIP embeddings do."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=gen, dtype=torch.float64)
    t = torch.randn(n, d, generator=gen, dtype=torch.float64) + 0.5 * v
    scale = 1 + spread * torch.rand(n, 1, generator=gen, dtype=torch.float64)
    return v * scale, t * scale.flip(0)


def screen(cls, **params):
    return cls(build(cls.Params, params, cls.__name__))


def benchbd_scores(cls, v, t, **params) -> np.ndarray:
    """A screen's scores with the training pairs as reference set, as `screen` assembles it."""
    features = "image" if t is None else "image+text"
    captions = None if t is None else t.numpy()
    references = reference_set(v.numpy(), captions)
    return screen(cls, **params).score(v.numpy(), references, own_rows(len(v), features), None)


SETTINGS = [pytest.param(False, id="image"), pytest.param(True, id="image+text")]


@pytest.mark.parametrize("k", [1, 4, 16])
@pytest.mark.parametrize("text", SETTINGS)
def test_kdistance_is_the_authors(k, text):
    v, t = random_features()
    t = t if text else None
    got = benchbd_scores(KDistance, v, t, k=k)
    np.testing.assert_allclose(got, authors_kdistance(v, t, k), rtol=1e-9)


@pytest.mark.parametrize("k", [1, 4, 16])
@pytest.mark.parametrize("text", SETTINGS)
def test_slof_is_the_authors_at_the_true_neighbours(k, text):
    v, t = random_features(seed=1)
    t = t if text else None
    got = benchbd_scores(SLOF, v, t, k=k)
    np.testing.assert_allclose(got, authors_slof(v, t, k, shifted=False), rtol=1e-9)


@pytest.mark.parametrize("text", SETTINGS)
def test_the_listed_slof_deviation_is_the_neighbours_identity_alone(text):
    """The public code's index shift moves a row's neighbours wherever one lies past the row's
    own (a column past the diagonal stands for the next row); benchbd's slof differs from the
    public code where some neighbour moves, and only there. (Among captions every column past
    the image block is at least one row off, so with captions nearly every row moves.)"""
    v, t = random_features(seed=2)
    t = t if text else None
    got, published = benchbd_scores(SLOF, v, t, k=4), authors_slof(v, t, 4)
    assert not np.allclose(got, published)
    _, idx = authors_sorted(v, t)
    unmoved = (true_rows(idx[:, :4], len(v)) == idx[:, :4]).all(dim=1).numpy()
    assert unmoved.any() or text
    np.testing.assert_allclose(got[unmoved], published[unmoved], rtol=1e-9)


@pytest.mark.parametrize("k", [2, 4, 16])
@pytest.mark.parametrize("text", SETTINGS)
def test_dao_is_the_authors_with_the_listed_deviations_undone(k, text):
    v, t = random_features(seed=3)
    t = t if text else None
    got = benchbd_scores(DAO, v, t, k=k)
    textbook = authors_dao(v, t, k, shifted=False, query_position=k - 1, lid_with_self=False)
    np.testing.assert_allclose(got, textbook, rtol=1e-7)
    assert not np.allclose(got, authors_dao(v, t, k))


@pytest.mark.parametrize("text", SETTINGS)
def test_iforest_is_the_authors_usage(text):
    v, t = random_features(seed=4)
    t = t if text else None
    context = DefenseContext(None, None, seed=11)  # type: ignore[arg-type]
    features = "image" if t is None else "image+text"
    references = reference_set(v.numpy(), None if t is None else t.numpy())
    forest = screen(IsolationForestScreen)
    got = forest.score(v.numpy(), references, own_rows(len(v), features), context)
    from benchbd.core.seeds import substream

    np.testing.assert_array_equal(got, authors_iforest(v, t, substream(11, "iforest")))


def breunig_lof(x: np.ndarray, k: int) -> np.ndarray:
    """Local outlier factor as Breunig et al. (2000) define it, written out: reach-dist_k(p, o)
    = max(k-distance(o), d(p, o)), lrd(p) = 1 / mean_o reach-dist, LOF(p) = mean_o lrd(o) /
    lrd(p), o over p's k nearest other points."""
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    near = np.argsort(d, axis=1)[:, :k]
    kdist = np.take_along_axis(d, near, 1)[:, -1]
    reach = np.maximum(kdist[near], np.take_along_axis(d, near, 1))
    lrd = 1 / reach.mean(axis=1)
    return lrd[near].mean(axis=1) / lrd


def test_lof_is_scikit_learns_which_is_breunigs():
    v, _ = random_features(seed=5)
    got = benchbd_scores(LocalOutlier, v, None, k=5)
    np.testing.assert_allclose(got, breunig_lof(v.numpy(), 5), rtol=1e-9)


def test_the_clean_reference_reads_the_same_position_with_nothing_left_out():
    """Against the clean split no reference is the query's own: k-distance and SLOF read the
    sorted distances to all of them at the same 0-based position k."""
    v, _ = random_features(seed=6)
    refs = random_features(n=40, seed=7)[0]
    d = torch.sort(torch.cdist(v, refs, compute_mode=EXACT), dim=1).values
    got = screen(KDistance, k=4).score(v.numpy(), refs.numpy(), None, None)
    np.testing.assert_allclose(got, d[:, 4].numpy(), rtol=1e-9)


def test_screen_scores_raw_image_and_caption_embeddings_as_the_authors(tiny_data):
    """Through `screen`, the real path: the model's raw image and caption embeddings (no L2
    normalisation), each row against the other training pairs' images and captions, its own
    caption left out, equal the public code's k-distance and SLOF on `encode_image` and
    `encode_text`."""
    clip = create_clip(seed=0)
    clip.model.eval()  # as the pipeline hands a screen its models
    pairs = tiny_data.train.subset(list(range(48)))
    training = TrainingPairs(pairs, lambda: clip, lambda: clip)
    context = DefenseContext(tiny_data.clean, tiny_data.task, seed=0)
    with torch.no_grad():
        v = clip.model.encode_image(clip.normalize(pairs.images)).double()
        t = clip.model.encode_text(clip.tokenize(pairs.captions)).double()
    assert v.norm(dim=1).std() > 0  # raw: the norms differ
    for cls, authors in ((KDistance, authors_kdistance), (SLOF, authors_slof)):
        defense = screen(cls, k=4, reference="train", features="image+text", normalize=False)
        got = defense.screen(training, context).scores.numpy()
        expected = authors(v, t, 4) if cls is KDistance else authors(v, t, 4, shifted=False)
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_normalize_is_left_out_of_the_record_at_its_default():
    """Results made before the parameter existed keep their fingerprints."""
    assert "normalize" not in screen(KDistance).params.to_dict()
    assert screen(KDistance, normalize=False).params.to_dict()["normalize"] is False


@pytest.mark.slow
def test_slof_runs_through_the_pipeline_in_the_papers_setting():
    """`slof`, registered as its entry point declares it, scores every training pair through
    `stages.detect` (one finite score a pair, its share dropped), in the public code's setting."""
    from test_stages import SIZES, config

    from benchbd.engine.plugins import defenses
    from benchbd.engine.stages import detect

    defenses.register("slof", SLOF, package="benchbd")
    try:
        paper = {"reference": "train", "features": "image+text", "normalize": False}
        metrics, _ = detect(config("slof", defense_params=paper))
    finally:
        defenses.unregister("slof")
    assert metrics["scored"] == SIZES.train
    assert 0.0 <= metrics["auroc"] <= 1.0
    assert metrics["dropped"] == round(0.05 * SIZES.train)


def test_slof_is_declared_as_a_defense_entry_point():
    import importlib
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    target = project["project"]["entry-points"]["benchbd.defenses"]["slof"]
    module, _, name = target.partition(":")
    assert getattr(importlib.import_module(module), name) is SLOF
