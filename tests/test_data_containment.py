"""Paths a data file names stay inside its folder with links followed: a dataset that links
out (a folder or a file pointing elsewhere on the machine) is refused when it is loaded, in one
line naming the path, and links that stay inside the folder keep working."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import picture, refused_before_training, write_folder, write_pairs

from benchbd.core.errors import BenchbdError
from benchbd.engine.data.sizes import DataSizes
from benchbd.engine.data.sources import load_data

SIZES = DataSizes(train=0, clean=4, test=0)


@pytest.fixture(autouse=True)
def no_workers(monkeypatch):
    monkeypatch.setenv("BENCHBD_WORKERS", "0")


@pytest.fixture
def outside(tmp_path):
    """A folder beside the data folders, holding an image and a text file nobody listed."""
    folder = tmp_path / "outside"
    folder.mkdir()
    picture("red", 99).save(folder / "secret.png")
    (folder / "secret.txt").write_text("red\ngreen\nblue\nyellow\nwhite\npurple\n")
    return folder


def with_rows(csv_path, *names):
    """Append rows naming `names` to a pairs CSV."""
    with open(csv_path, "a") as handle:
        for name in names:
            handle.write(f"{name},a red thing\n")


def test_run_refuses_a_csv_row_through_a_linked_folder_before_training(tmp_path, outside):
    path = write_pairs(tmp_path / "cc", n=24)
    os.symlink(outside, tmp_path / "cc" / "linkdir")
    with_rows(path, "linkdir/secret.png")
    val = write_folder(tmp_path / "val", per_class=1)
    line = refused_before_training(tmp_path, f"csv:{path}", f"imagefolder:{val}", "--target",
                                   "n2", "--clean-pairs", "4", "--batch-size", "8")  # fmt: skip
    assert "'linkdir/secret.png'" in line and "line 26 of train.csv" in line
    assert "outside the data folder" in line


def test_a_csv_row_naming_a_linked_file_outside_is_refused(tmp_path, outside):
    path = write_pairs(tmp_path / "cc", n=8)
    os.symlink(outside / "secret.png", tmp_path / "cc" / "images" / "evil.png")
    with_rows(path, "images/evil.png")
    val = write_folder(tmp_path / "val", per_class=1)
    with pytest.raises(BenchbdError, match=r"'images/evil.png' on line 10 of train.csv resol"):
        load_data(f"csv:{path}|eval=imagefolder:{val}", SIZES, 32)


def test_a_link_to_a_system_file_is_refused_not_opened(tmp_path):
    path = write_pairs(tmp_path / "cc", n=8)
    os.symlink("/etc/passwd", tmp_path / "cc" / "images" / "passwd.png")
    with_rows(path, "images/passwd.png")
    val = write_folder(tmp_path / "val", per_class=1)
    with pytest.raises(BenchbdError, match="resolves outside the data folder"):
        load_data(f"csv:{path}?missing=skip|eval=imagefolder:{val}", SIZES, 32)


def test_imagefolder_class_folder_or_image_linked_outside_is_refused(tmp_path, outside):
    val = write_folder(tmp_path / "val", per_class=2)
    os.symlink(outside / "secret.png", val / "n0" / "9.png")
    with pytest.raises(BenchbdError, match=r"image path 'n0/9.png' .*outside the data folder"):
        load_data(f"imagefolder:{val}", SIZES, 32)
    (val / "n0" / "9.png").unlink()
    os.symlink(outside, val / "n9")
    with pytest.raises(BenchbdError, match=r"'n9/secret.png' .*outside the data folder"):
        load_data(f"imagefolder:{val}", SIZES, 32)


def test_labels_csv_rows_linked_outside_are_refused(tmp_path, outside):
    val = write_folder(tmp_path / "val", per_class=2)
    os.symlink(outside, val / "linkdir")
    rows = [f"n{k}/{j}.png,{k}" for k in range(6) for j in range(2)] + ["linkdir/secret.png,0"]
    (val / "labels.csv").write_text("image,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(BenchbdError, match=r"'linkdir/secret.png' on line 14 of labels.csv"):
        load_data(f"imagefolder:{val}?labels=labels.csv", SIZES, 32)


@pytest.mark.parametrize("option", ["classes", "templates", "labels"])
def test_an_option_file_in_the_data_folder_linking_outside_is_refused(tmp_path, outside, option):
    val = write_folder(tmp_path / "val", per_class=2)
    os.symlink(outside / "secret.txt", val / "linked.txt")
    with pytest.raises(BenchbdError, match=rf"{option} file 'linked.txt' resolves outside"):
        load_data(f"imagefolder:{val}?{option}=linked.txt", SIZES, 32)


def test_an_absolute_option_file_may_live_anywhere(tmp_path, outside):
    val = write_folder(tmp_path / "val", per_class=2)
    spec = f"imagefolder:{val}?classes={outside / 'secret.txt'}"
    data = load_data(spec, DataSizes(train=0, clean=2, test=4), 32)
    assert data.task.classnames[0] == "red"


def test_links_that_stay_inside_the_data_folder_keep_working(tmp_path):
    path = write_pairs(tmp_path / "cc", n=16)
    os.symlink("images", tmp_path / "cc" / "alias")  # a relative link to a sibling folder
    os.symlink("0.png", tmp_path / "cc" / "images" / "again.png")
    with_rows(path, "alias/1.png", "images/again.png", "alias/again.png")
    val = write_folder(tmp_path / "val", per_class=1)
    os.symlink(val / "n1", val / "n1_alias")  # an absolute link to a folder inside
    data = load_data(f"csv:{path}|eval=imagefolder:{val}", DataSizes(0, 4, 0), 32)
    assert len(data.train) + len(data.clean) == 19 and len(data.test) == 7
    images = torch.cat([data.train.images[:], data.clean.images[:], data.test.images[:]])
    assert images.shape == (26, 3, 32, 32)


def test_a_data_folder_that_is_itself_a_link_works(tmp_path):
    path = write_pairs(tmp_path / "real", n=12)
    os.symlink(tmp_path / "real", tmp_path / "cc")
    with_rows(path, str(tmp_path / "cc" / "images" / "3.png"))  # absolute, through the link
    val = write_folder(tmp_path / "val", per_class=1)
    data = load_data(f"csv:{tmp_path / 'cc' / 'train.csv'}|eval=imagefolder:{val}", SIZES, 32)
    assert len(data.train) + len(data.clean) == 13
    assert data.train.images[:].shape[0] == len(data.train)


def save_with_stored_paths(folder, paths):
    """A saved dataset whose image column holds file paths and no bytes (as older `datasets`
    versions and other writers leave it; today's `save_to_disk` embeds the bytes)."""
    import datasets

    struct = {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}
    datasets.Dataset.from_dict(
        {
            "image": [{"bytes": None, "path": p} for p in paths],
            "caption": ["a blue thing"] * len(paths),
        },
        features=datasets.Features({"image": struct, "caption": datasets.Value("string")}),
    ).save_to_disk(str(folder))
    info = json.loads((folder / "dataset_info.json").read_text())
    info["features"]["image"] = {"_type": "Image"}
    (folder / "dataset_info.json").write_text(json.dumps(info))


def test_hf_stored_image_paths_linked_outside_are_refused(tmp_path, outside):
    folder = tmp_path / "pairs"
    save_with_stored_paths(folder, [f"files/{i}.png" for i in range(8)] + ["linkdir/secret.png"])
    (folder / "images").mkdir()
    for i in range(8):
        picture("blue", i).save(folder / "images" / f"{i}.png")
    os.symlink("images", folder / "files")  # stored paths through a link inside: fine
    val = write_folder(tmp_path / "val", per_class=1)
    spec = f"hf:{folder}|eval=imagefolder:{val}"
    os.symlink(outside, folder / "linkdir")
    with pytest.raises(BenchbdError, match=r"'linkdir/secret.png' in row 8 .*outside the data"):
        load_data(spec, SIZES, 32)
    os.unlink(folder / "linkdir")
    os.symlink("images", folder / "linkdir")
    os.symlink(outside / "secret.png", folder / "images" / "secret.png")
    with pytest.raises(BenchbdError, match=r"'linkdir/secret.png' in row 8 .*outside the data"):
        load_data(spec, SIZES, 32)
    os.unlink(folder / "images" / "secret.png")
    picture("blue", 9).save(folder / "images" / "secret.png")
    data = load_data(spec, SIZES, 32)
    assert data.train.images[:].shape == (len(data.train), 3, 32, 32)
