"""The registry: names, metadata, checksums, and the dataset cards that document them."""
import json
import re
from pathlib import Path

import pytest

from recfb import datasets
from recfb.datasets.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
CARDS = REPO / "datasets"
EXPECTED = ["ml-100k", "ml-1m", "coat", "lastfm-2k", "video", "beauty", "modcloth-deca", "synthetic"]
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def test_list_datasets_names_every_dataset_in_order():
    assert datasets.list_datasets() == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_spec_is_complete_and_consistent(name):
    spec = datasets.get_spec(name)
    assert spec.name == name and spec.description and spec.licence and spec.returns and spec.how_to_get
    for rel, digest in spec.files.items():
        assert HEX64.match(digest), f"{name}/{rel}: {digest!r} is not a sha256"
    for rel in spec.download_checked:
        assert rel in spec.files, f"{name}: download_checked file {rel} has no recorded sha256"
    if spec.generated:
        assert spec.url is None and not spec.files
        return
    assert spec.citation and spec.homepage
    if spec.url is None:  # no official archive: the error must say so and how to get the files
        assert "no official archive" in spec.how_to_get
    else:
        assert spec.url.startswith("https://")
        assert spec.archive_sha256 or spec.archive_md5 or spec.download_checked, "downloads must be checked"
        assert spec.url in spec.how_to_get


def test_info_is_plain_json_serialisable_metadata():
    meta = datasets.info("ml-100k")
    assert json.loads(json.dumps(meta)) == meta
    assert meta["url"] == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert meta["counts"] == {"rows": 100_000, "users": 943, "items": 1_682}
    assert "redistribution" in meta["licence"].lower()


def test_unknown_name_suggests_the_closest_and_lists_all():
    with pytest.raises(ValueError, match=r"unknown dataset 'ml100k'\. Did you mean 'ml-100k'\?.*coat"):
        datasets.load("ml100k")
    with pytest.raises(TypeError, match="must be a str"):
        datasets.info(100)


@pytest.mark.parametrize("name", EXPECTED)
def test_card_documents_source_licence_and_every_checksum(name):
    spec = DATASETS[name]
    card = (CARDS / f"{name}.md").read_text(encoding="utf-8")
    assert "licen" in card.lower()
    if spec.url:
        assert spec.url in card
    for rel, digest in spec.files.items():
        assert re.search(rf"`{re.escape(rel)}`.*`{digest}`", card), f"{name}.md lacks {rel} with sha256 {digest}"
    index = (CARDS / "README.md").read_text(encoding="utf-8")
    assert f"({name}.md)" in index


def test_cards_folder_holds_no_data_files():
    """Licensed data must never be committed: datasets/ holds markdown cards only."""
    stray = [p.name for p in CARDS.rglob("*") if p.is_file() and p.suffix != ".md"]
    assert not stray, f"data files in datasets/: {stray}"


def test_registry_checksums_match_the_shared_datasets_readme(shared_data):
    """The sha256 table of the shared README (the reference copies) is what the registry records."""
    recorded = {}
    folder = None
    for line in (shared_data / "README.md").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"## (\S+):", line)
        if heading:
            folder = heading.group(1)
        row = re.match(r"\| `([^`]+)` \| \d+ \| `([0-9a-f]{64})`", line)
        if row and folder:
            recorded.setdefault(folder, {})[row.group(1)] = row.group(2)
    for spec in DATASETS.values():
        if not spec.generated:
            assert spec.files == recorded[spec.folder], spec.name
