"""Real sources (csv:, hf:, imagefolder:) on tiny datasets the tests write: loading, poisoning
through an attack, a training step, streamed evaluation, and the bad inputs users hit."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch
from conftest import CLASSES, COLOURS, picture, refused_before_training, write_folder, write_pairs
from PIL import Image
from typer.testing import CliRunner

from benchbd.cli import app
from benchbd.core.errors import BenchbdError
from benchbd.core.params import build
from benchbd.core.seeds import substream
from benchbd.engine.data.images import LazyImages, StreamedPairSet, decode
from benchbd.engine.data.pairs import PairSet
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data
from benchbd.engine.evaluate import evaluate
from benchbd.engine.model import create_clip
from benchbd.engine.planning import build_attack
from benchbd.engine.plugins import AttackSetup, attacks
from benchbd.engine.poisoned_model import trigger_examples
from benchbd.engine.run_config import RunConfig
from benchbd.engine.train import TrainConfig, train

ALL = DataSizes(train=0, clean=8, test=0)
STEP = TrainConfig(epochs=1, batch_size=8, lr=1e-3, warmup_steps=1)


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    """Decode in the test process (worker start-up costs more than these tiny sets)."""
    monkeypatch.setenv("BENCHBD_WORKERS", "0")


@pytest.fixture
def cc(tmp_path):
    """A caption CSV for training and a class-folder test set, as in the paper's setting."""
    csv_path = write_pairs(tmp_path / "cc")
    val = write_folder(tmp_path / "val")
    return f"csv:{csv_path}|eval=imagefolder:{val}?classes=classes.json&templates=templates.txt"


def poison_train_evaluate(data, target: int, count: int = 4):
    """The whole path on a real source: badnet poisons, one training step, evaluation."""
    cls = attacks.get("badnet")
    params = build(cls.Params, {"pattern": "white", "location": "bottom_right"}, "badnet")
    attack = cls(params, AttackSetup(target, data.task, count, seed=0))
    poisoned = attack.poison(data.train)
    clip = create_clip("benchbd-rn-tiny", seed=0)
    losses = train(clip, poisoned.pairs, STEP, seed=0)
    metrics = evaluate(clip, data.test, data.task, target, attack.apply_trigger, seed=0)
    return attack, poisoned, losses, metrics


@pytest.mark.slow
def test_csv_with_an_imagefolder_test_set_poisons_trains_and_evaluates(cc):
    data = load_data(cc, ALL, image_size=32)
    # a tenth of the 24 evaluation images is set aside for validation, disjoint from test
    assert (len(data.train), len(data.clean), len(data.test)) == (40, 8, 22)
    assert len(data.validation) == 2
    assert data.task.classnames == CLASSES
    assert data.task.templates == ["a photo of a {}.", "a {} thing"]
    assert isinstance(data.train, StreamedPairSet) and data.train.images.shape[1:] == (3, 32, 32)
    assert (data.train.labels == -1).all()  # caption pairs carry no class
    first = data.test.images[0]
    assert first.dtype == torch.uint8 and first.shape == (3, 32, 32)
    assert abs(first[0].float().mean().item() - 220) < 8  # red, resized and cropped
    attack, poisoned, losses, metrics = poison_train_evaluate(data, target=CLASSES.index("blue"))
    assert len(poisoned.indices) == 4 and len(losses) == 5 and np.isfinite(losses).all()
    row = poisoned.indices[0]
    assert "blue" in poisoned.pairs.captions[row]
    assert poisoned.pairs.images[row][:, -2:, -2:].eq(255).all()  # the white corner patch
    assert not data.train.images[row][:, -2:, -2:].eq(255).all()  # the source is untouched
    assert 0 <= metrics.ca <= 1 and 0 <= metrics.asr <= 1 and metrics.ca_top5 is not None
    non_target = int((data.test.labels != CLASSES.index("blue")).sum())
    assert metrics.ca_top5 >= metrics.ca and metrics.n_triggered == non_target == 18


@pytest.mark.slow
def test_streamed_evaluation_matches_in_memory_evaluation(cc):
    """The same images, read from disk in batches of 5 or held in memory: the same metrics."""
    from benchbd.engine.evaluate import evaluate_streamed

    data = load_data(cc, ALL, image_size=32)
    in_memory = PairSet(data.test.images[:], list(data.test.captions), data.test.labels)
    cls = attacks.get("badnet")
    params = build(cls.Params, {"pattern": "checkerboard", "location": "top_left"}, "badnet")
    attack = cls(params, AttackSetup(2, data.task, 0, seed=0))
    clip = create_clip("benchbd-rn-tiny", seed=3)
    a = evaluate(clip, in_memory, data.task, 2, attack.apply_trigger, seed=1)
    b = evaluate_streamed(clip, data.test, data.task, 2, attack.apply_trigger, 1, batch_size=5)
    assert (a.ca, a.asr, a.ra, a.n_triggered) == (b.ca, b.asr, b.ra, b.n_triggered)


def test_show_draws_the_trigger_streamed_evaluation_applies(cc):
    """On a test set read from disk, `benchbd show` triggers each batch with the generator
    the streamed evaluation gives it: the same noise patches at the same random places."""
    config = RunConfig(attack="badnet", dataset=cc, target="red", sizes=ALL, seed=2)
    clip = create_clip(config.model, seed=0)
    data = load_data(config.dataset, config.sizes, clip.image_size)
    attack = build_attack(config, data)
    seen = []

    def trigger(images, generator):
        seen.append((images.clone(), attack.apply_trigger(images, generator)))
        return seen[-1][1]

    evaluate(clip, data.test, data.task, attack.setup.target, trigger,
             substream(config.seed, "evaluate"))  # fmt: skip
    _, clean, triggered = trigger_examples(config, 6)
    assert torch.equal(clean, torch.cat([c for c, _ in seen])[:6])
    assert torch.equal(triggered, torch.cat([t for _, t in seen])[:6])


@pytest.mark.parametrize(
    "name, params",
    [
        ("badnet", {}),
        ("blended", {}),
        ("wanet", {"cross_ratio": 1.0}),
        ("label_consistent", {"harden": False}),
    ],
)
def test_every_attack_poisons_streamed_pairs_as_it_poisons_pairs_in_memory(cc, name, params):
    """Poisoning files through the overlay gives the very pairs it gives in memory."""
    data = load_data(cc, ALL, image_size=32)
    in_memory = PairSet(data.train.images[:], list(data.train.captions), data.train.labels)
    cls = attacks.get(name)
    target = CLASSES.index("blue")
    results = []
    for pairs in (data.train, in_memory):
        attack = cls(build(cls.Params, params, name), AttackSetup(target, data.task, 3, seed=4))
        results.append(attack.poison(pairs))
    streamed, reference = results
    assert streamed.indices == reference.indices and len(streamed.indices) == 3
    assert streamed.pairs.captions == reference.pairs.captions
    assert isinstance(streamed.pairs.images, LazyImages)
    assert torch.equal(streamed.pairs.images[:], reference.pairs.images)
    assert not torch.equal(reference.pairs.images, in_memory.images)


def test_csv_columns_and_delimiter_are_configurable(tmp_path):
    path = write_pairs(tmp_path / "cc", n=24, sep="\t", image="img", caption="text")
    val = write_folder(tmp_path / "val", per_class=1)
    spec = f"csv:{path}?image=img&caption=text&sep=tab|eval=imagefolder:{val}"
    data = load_data(spec, DataSizes(train=10, clean=4, test=0), image_size=32)
    assert len(data.train) == 10 and len(data.clean) == 4
    assert data.task.classnames == [f"n{k}" for k in range(6)]  # no classes file: folder ids
    assert all(c.startswith("a ") for c in data.train.captions)


@pytest.mark.slow
def test_hf_saved_labelled_dataset_uses_its_test_split(tmp_path):
    import datasets

    def split(n, offset):
        return datasets.Dataset.from_dict(
            {"img": [picture(CLASSES[i % 6], offset + i) for i in range(n)],
             "label": [i % 6 for i in range(n)]},
            features=datasets.Features(
                {"img": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)}
            ),
        )  # fmt: skip

    datasets.DatasetDict({"train": split(36, 0), "test": split(12, 500)}).save_to_disk(
        str(tmp_path / "colours")
    )
    data = load_data(f"hf:{tmp_path / 'colours'}", ALL, image_size=32)
    assert (len(data.train), len(data.clean), len(data.test), len(data.validation)) == (
        28,
        8,
        11,
        1,
    )
    assert data.task.classnames == CLASSES
    rows = data.test.images.rows.tolist()
    assert sorted(rows + data.validation.images.rows.tolist()) == list(range(12))
    assert data.test.labels.tolist() == [i % 6 for i in rows]
    # a labelled set's captions: a prompt template filled with the row's class name
    for caption, label in zip(data.train.captions, data.train.labels.tolist(), strict=True):
        assert CLASSES[label] in caption
    _, poisoned, losses, metrics = poison_train_evaluate(data, target=0)
    assert all(data.train.labels[i] != 0 for i in poisoned.indices)
    assert len(losses) == 3 and metrics.n_test == 11 and metrics.ca_top5 is not None


def test_hf_caption_dataset_with_an_imagefolder_test_set(tmp_path):
    import datasets

    table = datasets.Dataset.from_dict(
        {"image": [picture(CLASSES[i % 6], i) for i in range(20)],
         "text": [f"a {CLASSES[i % 6]} thing" for i in range(20)]},
        features=datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")}),
    )  # fmt: skip
    table.save_to_disk(str(tmp_path / "pairs"))
    val = write_folder(tmp_path / "val", per_class=1)
    spec = f"hf:{tmp_path / 'pairs'}?caption=text|eval=imagefolder:{val}?classes=classes.json"
    data = load_data(spec, DataSizes(train=0, clean=4, test=0), image_size=32)
    assert len(data.train) == 16 and data.train.captions[0].endswith("thing")
    assert data.task.templates[0] == "a photo of a {}."  # the built-in prompt ensemble
    image = data.train.images[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    with pytest.raises(BenchbdError, match="no caption column 'caption'"):
        load_data(f"hf:{tmp_path / 'pairs'}?caption=caption", ALL, 32)


def test_imagefolder_with_a_labels_csv_and_class_list(tmp_path):
    root = tmp_path / "val"
    (root / "all").mkdir(parents=True)
    with open(root / "labels.csv", "w") as handle:
        handle.write("image,label\n")
        for i in range(12):
            picture(CLASSES[i % 6], i).save(root / "all" / f"{i}.png")
            handle.write(f"all/{i}.png,{i % 6}\n")
    (root / "names.txt").write_text("\n".join(CLASSES) + "\n")
    spec = f"imagefolder:{root}?labels=labels.csv&classes=names.txt"
    data = load_data(spec, DataSizes(train=0, clean=2, test=4), image_size=32)
    assert data.task.classnames == CLASSES
    # 12 labelled rows: 4 test, 1 validation (a tenth), 2 clean, the rest train
    assert len(data.test) == 4 and len(data.clean) == 2 and len(data.train) == 5
    assert len(data.validation) == 1
    # each test image carries the label its row of labels.csv gave it (its colour's class)
    for image, label in zip(data.test.images, data.test.labels.tolist(), strict=True):
        colour = torch.tensor(COLOURS[CLASSES[label]], dtype=torch.float)
        assert (image.float().mean(dim=(1, 2)) - colour).abs().max() < 10


def test_subsets_stay_lazy_and_keep_poisoned_rows(cc):
    data = load_data(cc, ALL, image_size=32)
    images = data.train.images.clone()
    images[[3]] = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    pairs = data.train.with_changes(images=images)
    view = pairs.subset([5, 3])
    assert isinstance(view.images, LazyImages) and len(view) == 2
    assert view.images[1].eq(0).all() and not view.images[0].eq(0).all()
    assert view.captions == [data.train.captions[5], data.train.captions[3]]


def test_decode_with_loader_workers(cc, monkeypatch):
    """Two worker processes decode the same pixels as the test process does."""
    from benchbd.engine.data.images import stream

    data = load_data(cc, ALL, image_size=32)
    batches = [[0, 1, 2], [3, 4]]
    got = torch.cat([b for b, _ in stream(data.test.images, batches, workers=2)])
    assert torch.equal(got, data.test.images[[0, 1, 2, 3, 4]])


# ---- bad inputs ------------------------------------------------------------------------------


def test_missing_image_files_stop_the_run_or_are_skipped_and_counted(tmp_path, caplog):
    path = write_pairs(tmp_path / "cc", n=24)
    (tmp_path / "cc" / "images" / "5.png").unlink()
    (tmp_path / "cc" / "images" / "7.png").unlink()
    val = write_folder(tmp_path / "val", per_class=1)
    with pytest.raises(BenchbdError, match=r"2 of 24 image files are missing.*missing=skip"):
        load_data(f"csv:{path}|eval=imagefolder:{val}", ALL, 32)
    with caplog.at_level(logging.WARNING, logger="benchbd.engine.data"):
        data = load_data(f"csv:{path}?missing=skip|eval=imagefolder:{val}", ALL, 32)
    assert len(data.train) + len(data.clean) == 22
    assert "2 of 24 image files are missing (first: images/5.png); skipped" in caplog.text


def test_unreadable_image_is_one_clear_error(tmp_path):
    path = write_pairs(tmp_path / "cc", n=16)
    val = write_folder(tmp_path / "val", per_class=1)
    (val / "n2" / "0.png").write_bytes(b"not a png at all")
    data = load_data(f"csv:{path}|eval=imagefolder:{val}", DataSizes(0, 4, 0), 32)
    with pytest.raises(BenchbdError, match=r"^unreadable image n2/0.png: ") as info:
        evaluate(create_clip("benchbd-rn-tiny"), data.test, data.task, 0, None, seed=0)
    assert "\n" not in str(info.value)


def test_unreadable_image_from_a_worker_is_the_same_one_line(tmp_path):
    from benchbd.engine.data.images import stream

    path = write_pairs(tmp_path / "cc", n=16)
    (tmp_path / "cc" / "images" / "3.png").write_bytes(b"\x89PNG broken")
    val = write_folder(tmp_path / "val", per_class=1)
    data = load_data(f"csv:{path}|eval=imagefolder:{val}", DataSizes(0, 1, 0), 32)
    with pytest.raises(BenchbdError, match=r"^unreadable image images/3.png: [^\n]*$"):
        list(stream(data.train.images, [list(range(len(data.train)))], workers=1))


def test_missing_column_names_the_columns_there_are(tmp_path):
    path = write_pairs(tmp_path / "cc", n=4, caption="text")
    with pytest.raises(BenchbdError, match=r"no column 'caption'.*columns: image, text"):
        load_data(f"csv:{path}", ALL, 32)


def test_target_class_absent_from_the_evaluation_classes(cc):
    data = load_data(cc, ALL, 32)
    config = RunConfig(dataset=cc, target="banana", sizes=ALL)
    with pytest.raises(BenchbdError, match="unknown target class 'banana'"):
        build_attack(config, data)


def one_class_folder(folder, n=4):
    """An image folder with a single class: nothing to tell apart."""
    (folder / "n0").mkdir(parents=True)
    for j in range(n):
        picture("red", j).save(folder / "n0" / f"{j}.png")
    return folder


def test_a_one_class_evaluation_set_stops_the_run_before_training(tmp_path):
    path = write_pairs(tmp_path / "cc", n=16)
    val = one_class_folder(tmp_path / "val")
    line = refused_before_training(tmp_path, f"csv:{path}", f"imagefolder:{val}", "--target",
                                   "n0", "--clean-pairs", "4", "--batch-size", "8")  # fmt: skip
    assert "one class ('n0')" in line and "--eval-dataset" in line


def test_a_target_class_the_evaluation_set_lacks_stops_the_run_before_training(cc, tmp_path):
    train_csv, _, rest = cc.partition("|eval=")
    line = refused_before_training(tmp_path, train_csv, rest, "--target", "banana",
                                   "--clean-pairs", "8")  # fmt: skip
    assert "unknown target class 'banana'" in line


def test_an_evaluation_split_of_one_class_is_refused_when_loaded(tmp_path):
    val = write_folder(tmp_path / "val", per_class=2)
    with pytest.raises(BenchbdError, match=r"all 1 test images are of one class.*--test-images"):
        load_data(f"imagefolder:{val}", DataSizes(train=0, clean=2, test=1), 32)
    with pytest.raises(BenchbdError, match=r"all 1 test images are of one class.*--test-images"):
        load_data("synthetic", DataSizes(train=8, clean=4, test=1), 32)
    import datasets  # a dataset whose own test split holds one class

    def split(n, classes):
        return datasets.Dataset.from_dict(
            {"image": [picture(CLASSES[i % classes], i) for i in range(n)],
             "label": [i % classes for i in range(n)]},
            features=datasets.Features(
                {"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)}
            ),
        )  # fmt: skip

    folder = tmp_path / "colours"
    datasets.DatasetDict({"train": split(12, 6), "test": split(3, 1)}).save_to_disk(str(folder))
    with pytest.raises(BenchbdError, match=r"all 3 test images are of one class \('red'\)"):
        load_data(f"hf:{folder}", ALL, 32)


def test_a_source_left_without_rows_is_refused_when_loaded(tmp_path):
    path = write_pairs(tmp_path / "cc", n=8)
    for image in (tmp_path / "cc" / "images").iterdir():
        image.unlink()
    good = write_pairs(tmp_path / "good", n=8)
    val = write_folder(tmp_path / "val", per_class=1)
    spec = f"csv:{path}?missing=skip|eval=imagefolder:{val}|clean=csv:{good}"
    with pytest.raises(BenchbdError, match=r"has no rows left.*all 8 .*missing"):
        load_data(spec, ALL, 32)
    spec = f"csv:{good}|eval=imagefolder:{val}|clean=csv:{path}?missing=skip"
    with pytest.raises(BenchbdError, match=r"csv:.*cc/train.csv\?missing=skip has no rows left"):
        load_data(spec, ALL, 32)


@pytest.mark.parametrize("name", ["../outside.png", "images/../../outside.png", "/etc/passwd"])
def test_paths_escaping_the_data_folder_are_refused(tmp_path, name):
    (tmp_path / "cc").mkdir()
    picture("red", 0).save(tmp_path / "outside.png")
    path = tmp_path / "cc" / "train.csv"
    path.write_text(f"image,caption\n{name},a red thing\n")
    with pytest.raises(BenchbdError, match="resolves outside the data folder"):
        load_data(f"csv:{path}", ALL, 32)


def test_captions_without_classes_need_an_evaluation_set(tmp_path):
    path = write_pairs(tmp_path / "cc", n=4)
    with pytest.raises(BenchbdError, match="no classes to evaluate on.*--eval-dataset"):
        load_data(f"csv:{path}", ALL, 32)


def test_bad_class_and_template_files(tmp_path):
    val = write_folder(tmp_path / "val", per_class=1)
    (val / "five.txt").write_text("a\nb\nc\nd\ne\n")
    (val / "bad.txt").write_text("a photo\n")
    with pytest.raises(BenchbdError, match="lists 5 names for 6 classes"):
        load_data(f"imagefolder:{val}?classes=five.txt", DataSizes(0, 1, 2), 32)
    with pytest.raises(BenchbdError, match=r"template 'a photo' must contain '\{\}'"):
        load_data(f"imagefolder:{val}?templates=bad.txt", DataSizes(0, 1, 2), 32)
    with pytest.raises(BenchbdError, match="unknown option 'clases'; did you mean 'classes'"):
        load_data(f"imagefolder:{val}?clases=five.txt", DataSizes(0, 1, 2), 32)


def test_decode_resizes_the_short_side_then_crops_the_centre(tmp_path):
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, 10:30] = 255  # a white band in the middle third of a wide image
    Image.fromarray(image).save(tmp_path / "wide.png")
    out = decode(tmp_path / "wide.png", 10, "wide.png")
    assert out.shape == (3, 10, 10) and out[:, :, 2:8].float().mean() > 250


@pytest.mark.slow
def test_cli_runs_a_real_dataset_end_to_end(cc, tmp_path):
    train_csv, _, rest = cc.partition("|eval=")
    result = CliRunner().invoke(
        app,
        ["run", "--dataset", train_csv, "--eval-dataset", rest, "--target", "blue",
         "--poison-count", "4", "--clean-pairs", "8", "--epochs", "1", "--batch-size", "8",
         "--defense", "none", "--device", "cpu", "--out", str(tmp_path / "results")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    written = json.loads(next((tmp_path / "results").glob("*.json")).read_text())
    assert written["dataset"]["name"] == cc
    assert written["poison"]["count"] == 4 and written["target"]["name"] == "blue"
    assert written["metrics"]["before"]["ca_top5"] is not None


def test_hub_dataset_without_network_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchbdError, match="nor in the local datasets cache, and there is no"):
        load_data("hf:benchbd-tests/no-such-dataset", ALL, 32)


def test_dataset_strings_compose_and_reject_unknown_roles(tmp_path):
    from benchbd.engine.data.spec import compose, parse_run

    text = compose("csv:a.csv?sep=tab", eval="imagefolder:val", clean="csv:b.csv")
    assert text == "csv:a.csv?sep=tab|eval=imagefolder:val|clean=csv:b.csv"
    assert parse_run(text) == (
        "csv:a.csv?sep=tab",
        {"eval": "imagefolder:val", "clean": "csv:b.csv"},
    )
    with pytest.raises(BenchbdError, match="'test=x' should be eval=SOURCE or clean=SOURCE"):
        load_data("csv:a.csv|test=x", ALL, 32)


def test_zero_means_all_only_for_real_sources():
    with pytest.raises(BenchbdError, match="every split needs at least one pair"):
        load_data("synthetic", DataSizes(train=0), 32)
    with pytest.raises(BenchbdError, match="split sizes must be >= 0"):
        DataSizes(train=-1)


@pytest.mark.parametrize("argument", ["abc", "-1", "1.5", "2?size=64"])
def test_a_synthetic_seed_that_is_not_a_whole_number_is_one_clear_line(argument):
    with pytest.raises(BenchbdError, match=rf"^synthetic:{re.escape(argument)}: .*seed, a whole"):
        load_data(f"synthetic:{argument}", DataSizes(8, 4, 20), 32)
    result = CliRunner().invoke(app, ["run", "--dataset", f"synthetic:{argument}"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("benchbd: error: synthetic:"), result.output
    assert "int()" not in lines[0] and "whole number" in lines[0]


def hf_folder(folder, column, values, feature):
    """A saved dataset of len(values) red images and one more column."""
    import datasets

    datasets.Dataset.from_dict(
        {"image": [picture("red", i) for i in range(len(values))], column: values},
        features=datasets.Features({"image": datasets.Image(), column: feature}),
    ).save_to_disk(str(folder))
    return folder


def bad_data_file(tmp_path, case: str) -> str:
    """Write one kind of unreadable or contradictory data file; return the --dataset string."""
    import datasets

    path = write_pairs(tmp_path / "cc", n=12)
    val = write_folder(tmp_path / "val", per_class=2)
    evaluate_on = f"|eval=imagefolder:{val}"
    if case == "latin-1 csv":
        path.write_bytes("image,caption\nimages/0.png,un café\n".encode("latin-1"))
    elif case == "csv is a folder":
        return f"csv:{tmp_path / 'cc'}{evaluate_on}"
    elif case == "classes is a folder":
        return f"imagefolder:{val}?classes=n0"
    elif case == "latin-1 classes":
        (val / "names.txt").write_bytes("café\n".encode("latin-1") * 6)
        return f"imagefolder:{val}?classes=names.txt"
    elif case == "stray brace in a template":
        (val / "bad.txt").write_text("a {} photo}\n")
        return f"csv:{path}|eval=imagefolder:{val}?templates=bad.txt"
    elif case == "labels file without rows":
        (val / "empty.csv").write_text("image,label\n")
        return f"imagefolder:{val}?labels=empty.csv&classes=classes.json"
    elif case == "unknown missing= value":
        return f"csv:{path}?missing=ignore{evaluate_on}"
    elif case == "option given twice":
        return f"csv:{path}?sep=comma&sep=tab{evaluate_on}"
    elif case == "role given twice":
        return f"csv:{path}{evaluate_on}|eval=csv:{path}"
    elif case == "caption-only evaluation set":
        return f"csv:{path}|eval=csv:{write_pairs(tmp_path / 'other', n=4)}"
    elif case == "hf text labels":
        names = ["cat", "dog"] * 3
        return f"hf:{hf_folder(tmp_path / 'hf', 'label', names, datasets.Value('string'))}"
    elif case == "hf empty labels":
        folder = hf_folder(tmp_path / "hf", "label", [0, 1, None, 1], datasets.Value("int64"))
        (folder / "names.txt").write_text("a\nb\n")
        return f"hf:{folder}?classes=names.txt"
    elif case == "hf rows without a class":
        labels = datasets.ClassLabel(names=CLASSES)
        return f"hf:{hf_folder(tmp_path / 'hf', 'label', [0, 1, -1, 1], labels)}"
    elif case == "hf empty captions":
        folder = hf_folder(tmp_path / "hf", "caption", ["a", None, "b"], datasets.Value("string"))
        return f"hf:{folder}{evaluate_on}"
    elif case == "hf split of a plain dataset":
        folder = hf_folder(tmp_path / "hf", "caption", ["a", "b", "c"], datasets.Value("string"))
        return f"hf:{folder}?split=test{evaluate_on}"
    return f"csv:{path}{evaluate_on}"


@pytest.mark.parametrize(
    "case, message",
    [
        ("latin-1 csv", r"^train.csv is not UTF-8 text \(line 2\): save it as UTF-8$"),
        ("csv is a folder", r"^CSV file '.*cc' is a folder, not a file$"),
        ("classes is a folder", r"^classes file 'n0' is a folder, not a file$"),
        ("latin-1 classes", r"^names.txt is not UTF-8 text \(line 1\): save it as UTF-8$"),
        ("stray brace in a template", r"^template 'a \{\} photo\}' must contain '\{\}' exactly"),
        ("labels file without rows", r"^empty.csv has a header but no rows$"),
        ("unknown missing= value", r"^csv: missing must be one of error, skip \(got 'ignore'\)"),
        ("option given twice", r"option 'sep' is given twice"),
        ("role given twice", r"'eval=' is given twice"),
        ("caption-only evaluation set", r"^csv:.*other/train.csv has captions but no classes"),
        ("hf text labels", r"^hf: label column 'label' holds string, not class indices: "),
        ("hf empty labels", r"^hf: label column 'label' is empty in 1 row \(first: row 2\)"),
        ("hf rows without a class", r"^hf: label column 'label' has no class \(-1\) in 1 row "),
        ("hf empty captions", r"^hf: caption column 'caption' is empty in 1 row \(first: row 1\)"),
        ("hf split of a plain dataset", r"^hf: .* has no splits: drop split=test$"),
    ],
)
def test_data_files_that_cannot_be_read_as_given_are_one_clear_line(tmp_path, case, message):
    spec = bad_data_file(tmp_path, case)
    with pytest.raises(BenchbdError, match=message) as info:
        load_data(spec, DataSizes(train=0, clean=2, test=0), 32)
    assert "\n" not in str(info.value)
