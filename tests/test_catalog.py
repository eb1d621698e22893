"""The catalog file is read strictly: misspelt names are errors naming the nearest valid one,
relative paths are relative to the catalog's folder, and ``bad_images`` is checked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrator.data.catalog import Catalog, CatalogError, DatasetEntry, dataset_keys


def _catalog(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "catalog.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    ('[dataset.animalpose]\ncoco = "a.json"\n', "unknown section [dataset]; did you mean [datasets]?"),
    ('[weight]\nhrnet_w32 = "w.pth"\n', "unknown section [weight]; did you mean [weights]?"),
    ('datadir = "data"\n', "unknown key 'datadir'; did you mean 'data_dir'?"),
    ('[zebras]\nx = 1\n', "unknown section [zebras]"),
    ('[datasets.animalpose]\ncoco = "a.json"\nimage = "img"\n',
     "[datasets.animalpose] unknown key 'image'; did you mean 'images'? (valid: ['coco', "),
    ('[datasets.animalpose]\ncoco = "a.json"\nbad_image = "skip"\n',
     "unknown key 'bad_image'; did you mean 'bad_images'?"),
    ('[datasets.animalpose]\ncoco = 3\n', "[datasets.animalpose] coco = 3: expected a string"),
    ('[datasets.animalpose]\ncoco = "a.json"\nbad_images = "ignore"\n',
     "bad_images = 'ignore'; valid: ['stop', 'skip']"),
    ('[weights]\nhrnet_w18_smal = "w.pth"\n',
     "[weights] 'hrnet_w18_smal' is not a timm model; did you mean 'hrnet_w18_small'?"),
    ('datasets = "x"\n', "'datasets' must be a table"),
], ids=["section", "weights-section", "top-key", "no-hint", "dataset-key", "bad-images-key",
        "type", "bad-images-value", "weights-key", "not-a-table"])
def test_misspelt_names_are_errors_naming_the_nearest(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _catalog(tmp_path, text)
    with pytest.raises(CatalogError) as caught:
        Catalog.from_file(path)
    assert str(caught.value).startswith(f"catalog {path}: ")
    assert message in str(caught.value)
    if "did you mean" not in message:
        assert "did you mean" not in str(caught.value)


def test_relative_paths_are_relative_to_the_catalog(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    shutil.copytree(shared_data / "ap10k", folder / "data" / "ap10k")
    path = _catalog(folder, (
        'data_dir = "generated"\n'
        '[datasets.animalpose]\ncoco = "data/ap10k/annotations.json"\nimages = "data/ap10k/images"\n'
        '[datasets.lynx-test]\nczechlynx = "s3://bucket/lynx.csv"\nimages = "~/lynx"\n'
        'bad_images = "skip"\n'
        '[weights]\nhrnet_w32 = "../weights/hrnet_w32.pth"\n'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # as a trial does: it runs in a folder of its own
    catalog = Catalog.from_file(Path("..") / "project" / "catalog.toml")
    entry = catalog.entry("animalpose")
    assert entry.coco == str(folder / "data" / "ap10k" / "annotations.json")
    assert entry.images == str(folder / "data" / "ap10k" / "images")
    assert entry.bad_images == "stop"
    lynx = catalog.entry("lynx-test")
    assert lynx.czechlynx == "s3://bucket/lynx.csv" and lynx.images == str(Path.home() / "lynx")
    assert lynx.bad_images == "skip"
    assert catalog.weights["hrnet_w32"] == str(tmp_path / "weights" / "hrnet_w32.pth")
    assert catalog.data_dir == str(folder / "generated")
    instances, _, report = catalog.load("animalpose")
    assert len(instances) == 2 and report.kept == 2
    again = Catalog.from_dict(catalog.to_dict())  # as the trial receives it
    assert again.entry("lynx-test") == lynx and path.is_file()


def test_dataset_keys_are_the_entry_fields() -> None:
    assert dataset_keys() == ("coco", "czechlynx", "images", "split", "generate", "labels",
                              "format", "category", "sigmas", "bad_images")
    assert DatasetEntry("x", generate={"images": 3}).bad_images == "stop"


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_bad_images_stop_or_are_left_out_everywhere(
    tmp_path: Path, shared_data: Path, policy: str
) -> None:
    from pose_core.records import DataError

    shutil.copytree(shared_data / "ap10k", tmp_path / "ap10k")
    cut = tmp_path / "ap10k" / "images" / "000000000004.jpg"  # image id 4
    cut.write_bytes(cut.read_bytes()[:5000])
    path = _catalog(tmp_path, '[datasets.animalpose]\ncoco = "ap10k/annotations.json"\n'
                    f'images = "ap10k/images"\nbad_images = "{policy}"\n')
    catalog = Catalog.from_file(path)
    assert len(catalog.load("animalpose")[0]) == 2  # the reader only checks that files exist
    seen: list[tuple[str, int, int]] = []
    if policy == "stop":
        with pytest.raises(DataError, match=f"^{cut}: image file: field 'content': truncated"):
            catalog.check_images(["animalpose"], workers=2)
        return
    checked, reports = catalog.check_images(
        ["animalpose"], workers=2, progress=lambda *a: seen.append(a))
    assert seen[-1] == ("animalpose", 2, 2) and reports["animalpose"].bad_paths == {str(cut)}
    for copy in (checked, Catalog.from_dict(checked.to_dict())):
        instances, _, report = copy.load("animalpose")
        assert [i.image_id for i in instances] == [37516]
        assert report.kept == 1
        assert report.skipped == {"image does not decode (bad_images = skip)": 1}
    assert len(catalog.load("animalpose")[0]) == 2  # the original catalog is unchanged
