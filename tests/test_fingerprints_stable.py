"""Fingerprints pinned as strings: a refactoring of how an experiment is described, planned or
cached must never change the poisoned-model or run fingerprint of an existing setting, or every
cached model and result file would silently stop matching. A deliberate change of what a
fingerprint covers updates these strings in the same commit, and says why."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

from benchbd.core.cache import fingerprint
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.grid import Grid
from benchbd.engine.planning import plan
from benchbd.engine.plugins import attacks
from benchbd.engine.run_config import RunConfig
from benchbd.engine.train import TrainConfig

SMALL = DataSizes(train=200, clean=64, test=60, validation=30)
FAST = TrainConfig(epochs=1, batch_size=64)
# `benchbd run --from-pretrained`'s recipe, spelt out so the pin does not depend on where the
# default lives.
FINETUNE = TrainConfig(epochs=10.0, batch_size=64, lr=1e-5, warmup_steps=50)
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def real_dataset(root) -> str:
    """A caption CSV for training and a labelled class folder for evaluation, written with
    fixed content and relative paths so its fingerprint does not depend on `root`."""
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(24):
        colour = list(COLOURS)[i % 3]
        Image.new("RGB", (12, 10), COLOURS[colour]).save(root / "images" / f"{i}.png")
        rows.append((f"images/{i}.png", f"a {colour} thing number {i}"))
    with open(root / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    for k, colour in enumerate(COLOURS):
        (root / "eval" / f"n{k}").mkdir(parents=True)
        for j in range(4):
            Image.new("RGB", (10, 10), COLOURS[colour]).save(root / "eval" / f"n{k}" / f"{j}.png")
    names = {f"n{k}": colour for k, colour in enumerate(COLOURS)}
    (root / "eval" / "classes.json").write_text(json.dumps(names))
    return f"csv:{root / 'train.csv'}|eval=imagefolder:{root / 'eval'}?classes=classes.json"


def configs(tmp_path) -> dict[str, RunConfig]:
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"fixed stand-in weights: only their content hash is fingerprinted")
    grid = Grid(["blended"], ["inmodal"], [1], attack_params={"blended": {"alpha": 0.25}},
                sizes={"train": 200, "clean": 64, "test": 60, "validation": 30},
                pretrain={"epochs": 2, "batch_size": 64})  # fmt: skip
    return {
        "badnet-finetune": RunConfig(
            attack="badnet", defense="finetune", sizes=SMALL, pretrain=FAST
        ),  # fmt: skip
        "blended-inmodal-toml": grid.cells()[0],
        "wanet-cleanclip-params": RunConfig(
            attack="wanet",
            defense="cleanclip",
            sizes=SMALL,
            pretrain=FAST,
            seed=3,
            attack_params={"s": 0.75},
            defense_params={"epochs": 1, "batch_size": 64},
        ),  # fmt: skip
        "label-consistent-supervised-validation": RunConfig(
            attack="label_consistent",
            defense="cleanclip_supervised",
            sizes=SMALL,
            pretrain=FAST,
            poison_count=5,
            target="circle",
            split="validation",
        ),  # fmt: skip
        "no-attack-none": RunConfig(attack="none", defense="none", sizes=SMALL, pretrain=FAST),
        "from-pretrained-file": RunConfig(
            attack="badnet",
            defense="finetune",
            sizes=SMALL,
            pretrained=str(weights),
            from_pretrained=True,
            pretrain=FINETUNE,
        ),  # fmt: skip
    }


# The run fingerprints of the four cells whose defense epochs are left unset changed after 0.3.0:
# on their 64 clean pairs the defense now takes its recipe's reference step count
# (Params.scaled_to), a different recipe, recorded and fingerprinted as such.
PINNED = {
    "badnet-finetune": ("05d69452b41f6b68", "295e6c315fda6098"),
    "blended-inmodal-toml": ("789242a236c31724", "4c11cdf2cf88e2a9"),
    "wanet-cleanclip-params": ("5b4d266aff1bd02d", "397f93164c06e663"),
    "label-consistent-supervised-validation": ("c5a206726dc28f9b", "d4f658e279b1e070"),
    "no-attack-none": ("671eaca46ac6d8d0", "83285c19becc8cb6"),
    "from-pretrained-file": ("08ee729a4021ed7d", "07fb920d68252f2d"),
}


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    """Decode real images in the test process (worker start-up costs more than these sets)."""
    monkeypatch.setenv("BENCHBD_WORKERS", "0")


def test_poisoned_model_and_run_fingerprints_are_pinned(tmp_path):
    planned = {name: plan(config) for name, config in configs(tmp_path).items()}
    assert planned == PINNED


def test_real_data_fingerprints_keep_their_key(tmp_path):
    """A real source's data key holds the evaluation folder's absolute path, so the strings
    cannot be pinned for a dataset in tmp_path; what is pinned instead is every other field of
    both keys, exactly as the fingerprints have always been computed."""
    config = RunConfig(
        attack="badnet", defense="none", dataset=real_dataset(tmp_path / "real"),
        sizes=DataSizes(train=0, clean=4, test=0, validation=0), pretrain=FAST,
        target="green", poison_count=2,
    )  # fmt: skip
    data = load_data(config.dataset, config.sizes, image_size=32)
    model_key = {"version": 3, "data": data.train_key, "attack": "badnet",
                 "attack_params": attacks.get("badnet").Params().to_dict(), "target": 1,
                 "count": 2, "model": "benchbd-rn-tiny", "pretrain": FAST.to_dict(),
                 "seed": 0}  # fmt: skip
    model_fp = fingerprint(model_key)
    run_fp = fingerprint({"poisoned": model_fp, "defense": "none", "defense_params": {},
                          "split": "test"})  # fmt: skip
    assert plan(config) == (model_fp, run_fp)
