"""Loaders on the real files: counts and label sets as stated in each folder's PROVENANCE.md."""

import hashlib
import io
import json
import re
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from training.data import DatasetError, load_csv, load_folder, load_table, stratified_split
from training.datasets import NAMED_DATASETS, LoadedDataset, load_named
from training.download import DownloadError, Remote, download
from training.splits import find_duplicates

NEWSGROUPS_TRAIN = {
    "alt.atheism": 480,
    "comp.graphics": 584,
    "comp.os.ms-windows.misc": 591,
    "comp.sys.ibm.pc.hardware": 590,
    "comp.sys.mac.hardware": 578,
    "comp.windows.x": 593,
    "misc.forsale": 585,
    "rec.autos": 594,
    "rec.motorcycles": 598,
    "rec.sport.baseball": 597,
    "rec.sport.hockey": 600,
    "sci.crypt": 595,
    "sci.electronics": 591,
    "sci.med": 594,
    "sci.space": 593,
    "soc.religion.christian": 599,
    "talk.politics.guns": 546,
    "talk.politics.mideast": 564,
    "talk.politics.misc": 465,
    "talk.religion.misc": 377,
}
NEWSGROUPS_TEST_TOTAL = 7532
BBC_COUNTS = {"business": 510, "entertainment": 386, "politics": 417, "sport": 511, "tech": 401}
LIVEDOOR_COUNTS = {
    "dokujo-tsushin": 870,
    "it-life-hack": 870,
    "kaden-channel": 864,
    "livedoor-homme": 511,
    "movie-enter": 870,
    "peachy": 842,
    "smax": 870,
    "sports-watch": 900,
    "topic-news": 770,
}


def _has_header(message: str) -> bool:
    """A ``Subject:`` line in the first paragraph: the message still has its header block."""
    return re.search(r"^Subject:", message.split("\n\n")[0], re.MULTILINE) is not None


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the user's cache or reaches the network."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CLASSIFIER_CACHE_DIR", str(folder))
    monkeypatch.setenv("CLASSIFIER_OFFLINE", "1")
    return folder


def test_bbc(data_dir: Path) -> None:
    data = load_named("bbc", data_dir)
    assert data.test is None  # no split of its own: training makes a stratified one
    assert data.train.class_counts() == BBC_COUNTS
    assert data.train.sha256 == ("fdaee0f7451cd8db2709d00e992886fe1c387ee332b8c7b7c1554ed3d3e3382e")


def test_bbc_duplicates_across_the_stratified_split_are_found(data_dir: Path) -> None:
    data = load_named("bbc", data_dir).train
    train_rows, test_rows = stratified_split(data.labels, 0.2, seed=42)
    train, test = data.subset(train_rows), data.subset(test_rows)
    found = find_duplicates(train.texts, test.texts)
    assert found.count > 0, "the tutorial CSV holds some articles twice"
    normalised_train = {" ".join(t.split()) for t in train.texts}
    for row in found.test_rows:
        assert " ".join(test.texts[row].split()) in normalised_train
    others = set(range(len(test))) - set(found.test_rows)
    assert all(" ".join(test.texts[r].split()) not in normalised_train for r in others)


def test_ag_news_uses_the_subset_and_says_so(data_dir: Path) -> None:
    data = load_named("ag_news", data_dir)
    assert data.test is not None
    assert len(data.test) == 7600
    assert Counter(data.test.labels) == {"World": 1900, "Sports": 1900, "Business": 1900,
                                         "Sci/Tech": 1900}  # fmt: skip
    assert data.train.source.name == "train-subset-20k.csv"
    assert Counter(data.train.labels) == dict.fromkeys(
        ("World", "Sports", "Business", "Sci/Tech"), 5000
    )
    assert len(data.notes) == 1
    assert "20,000-row subset" in data.notes[0]
    assert "train.csv" in data.notes[0]
    # text = title + " " + description, the backslash line breaks left to the tokenizer
    assert data.test.texts[0].startswith("Fears for T N pension after talks Unions representing")
    assert data.test.sha256 == "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699"


def test_ag_news_prefers_the_full_train_file(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "data" / "ag_news"
    folder.mkdir(parents=True)
    shutil.copy(data_dir / "ag_news" / "test.csv", folder / "test.csv")
    lines = (data_dir / "ag_news" / "train-subset-20k.csv").read_text("utf-8").splitlines()
    (folder / "train.csv").write_text("\n".join(lines[:400]) + "\n", encoding="utf-8")
    data = load_named("ag_news", tmp_path / "data")
    assert data.train.source == folder / "train.csv"
    assert len(data.train) == 400
    assert data.notes == ()


@pytest.fixture(scope="module")
def newsgroups(data_dir: Path) -> LoadedDataset:
    return load_named("20newsgroups", data_dir)


def test_20newsgroups(newsgroups: LoadedDataset) -> None:
    data = newsgroups
    assert data.test is not None
    assert data.train.class_counts() == NEWSGROUPS_TRAIN
    assert len(data.test) == NEWSGROUPS_TEST_TOTAL
    assert set(data.test.labels) == set(NEWSGROUPS_TRAIN)
    assert all(_has_header(t) for t in data.train.texts)  # headers are kept by default


def test_20newsgroups_strips_headers_footers_quotes(
    data_dir: Path, newsgroups: LoadedDataset
) -> None:
    kept = newsgroups
    stripped = load_named("20newsgroups", data_dir, newsgroups_remove=("headers", "quotes"))
    assert stripped.train.labels == kept.train.labels
    assert sum(map(_has_header, stripped.train.texts)) < 50  # a few bodies quote headers
    assert not any(line.startswith(">") for t in stripped.train.texts[:200] for line in
                   t.splitlines())  # fmt: skip
    assert sum(map(len, stripped.train.texts)) < 0.8 * sum(map(len, kept.train.texts))
    assert any("headers, quotes" in note for note in stripped.notes)
    with pytest.raises(DatasetError, match="signatures"):
        load_named("20newsgroups", data_dir, newsgroups_remove=("signatures",))


def test_banking77(data_dir: Path) -> None:
    data = load_named("banking77", data_dir)
    assert data.test is not None
    assert len(data.train) == 10003
    assert len(data.test) == 3080
    categories = json.loads((data_dir / "banking77" / "categories.json").read_text())
    assert set(data.train.labels) == set(data.test.labels) == set(categories)
    assert len(categories) == 77
    assert set(Counter(data.test.labels).values()) == {40}
    counts = Counter(data.train.labels)
    assert counts["contactless_not_working"] == 35
    assert counts["card_payment_fee_charged"] == 187
    # quoted texts with embedded newlines are parsed as one row each
    newlines = sum((data_dir / "banking77" / f).read_text("utf-8").count("\n") for f in
                   ("train.csv", "test.csv"))  # fmt: skip
    assert newlines > len(data.train) + len(data.test) + 2
    # PROVENANCE.md's one byte-identical text, plus six that differ only in surrounding spaces
    duplicates = find_duplicates(data.train.texts, data.test.texts)
    assert duplicates.count == 7


def test_livedoor(data_dir: Path) -> None:
    data = load_named("livedoor", data_dir)  # the folder is japanese/ in this repository's CI
    assert data.test is None
    assert data.train.class_counts() == LIVEDOOR_COUNTS
    assert not any(t.startswith("http://news.livedoor.com") for t in data.train.texts)
    first = data.train.texts[0]  # dokujo-tsushin-4778030.txt: title, then body
    assert first.startswith("友人代表のスピーチ、独女はどうこなしている\uff1f\n")
    assert NAMED_DATASETS["livedoor"].lang == "ja"


def test_generic_table_formats_read_the_same_rows(data_dir: Path, tmp_path: Path) -> None:
    bbc = load_csv(data_dir / "bbc" / "bbc-text.csv", "text", "category")
    rows = list(zip(bbc.labels[:30], bbc.texts[:30], strict=True))
    tsv = tmp_path / "bbc.tsv"
    tsv.write_text("topic\tbody\n" + "".join(f"{c}\t{t}\n" for c, t in rows), encoding="utf-8")
    jsonl = tmp_path / "bbc.jsonl"
    jsonl.write_text(
        "".join(json.dumps({"body": t, "topic": c}) + "\n" for c, t in rows), encoding="utf-8"
    )
    headerless = tmp_path / "bbc-noheader.csv"
    headerless.write_text("".join(f'{c},"{t}"\n' for c, t in rows), encoding="utf-8")
    for loaded in (
        load_table(tsv, "body", "topic"),
        load_table(jsonl, "body", "topic"),
        load_table(headerless, "1", "0", header=False),
    ):
        assert loaded.texts == bbc.texts[:30]
        assert loaded.labels == bbc.labels[:30]


def test_generic_table_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text("text,label\nhello,\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"x\.csv:2: empty text"):
        load_table(bad, "text", "label")
    with pytest.raises(DatasetError, match="no column 'body'"):
        load_table(bad, "body", "label")
    with pytest.raises(DatasetError, match="suffix"):
        load_table(tmp_path / "x.parquet", "text", "label")


def test_folder_per_class_loader_on_the_bbc_full_text(data_dir: Path) -> None:
    folder = data_dir / "bbc" / "fulltext"
    data = load_folder(folder, encoding="latin-1")  # sport/199.txt has one Latin-1 byte
    assert data.class_counts() == BBC_COUNTS
    assert data.texts[0].split("\n")[0] == "Ad sales boost Time Warner profit"
    with pytest.raises(DatasetError, match="not valid utf-8"):
        load_folder(folder, encoding="utf-8")


# --- resolution: data directory → cache → download ---------------------------------------


def test_the_cache_is_used_when_the_data_directory_lacks_the_files(
    data_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLASSIFIER_DATA_DIR", raising=False)
    shutil.copytree(data_dir / "banking77", cache / "banking77")
    data = load_named("banking77", None)
    assert data.train.source == cache / "banking77" / "train.csv"
    assert len(data.test or []) == 3080


def test_offline_missing_file_says_which_file_and_where_to_put_it(
    tmp_path: Path, cache: Path
) -> None:
    empty = tmp_path / "datasets"
    empty.mkdir()
    with pytest.raises(DatasetError) as info:
        load_named("bbc", empty)
    message = str(info.value)
    assert "bbc-text.csv not found" in message
    assert str(empty / "bbc") in message
    assert str(cache / "bbc") in message
    assert "downloads are off" in message
    assert "storage.googleapis.com" in message  # where it would come from


def test_unreachable_download_is_reported_with_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    monkeypatch.delenv("CLASSIFIER_OFFLINE")
    missing = tmp_path / "nowhere" / "bbc-text.csv"
    remote = Remote(missing.as_uri(), "0" * 64, "test")
    monkeypatch.setitem(NAMED_DATASETS["bbc"].remotes, "bbc-text.csv", remote)
    with pytest.raises(DatasetError, match=r"cannot download file://.*Put bbc-text\.csv into"):
        load_named("bbc", tmp_path)
    assert not list(cache.rglob("*.part"))


def test_livedoor_has_no_checksummed_download_and_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"rondhuit\.com/download/ldcc-20140209\.tar\.gz"):
        load_named("livedoor", tmp_path)


def test_download_with_matching_sha256_lands_in_the_cache(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    monkeypatch.delenv("CLASSIFIER_OFFLINE")
    monkeypatch.delenv("CLASSIFIER_DATA_DIR", raising=False)
    source = data_dir / "bbc" / "bbc-text.csv"
    real = NAMED_DATASETS["bbc"].remotes["bbc-text.csv"]
    local = Remote(source.as_uri(), real.sha256, "test: the publisher's file, served locally")
    monkeypatch.setitem(NAMED_DATASETS["bbc"].remotes, "bbc-text.csv", local)
    data = load_named("bbc", None)
    cached = cache / "bbc" / "bbc-text.csv"
    assert data.train.source == cached
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == real.sha256
    assert len(data.train) == 2225


def test_checksum_mismatch_discards_the_download(data_dir: Path, tmp_path: Path) -> None:
    source = data_dir / "banking77" / "test.csv"
    dest = tmp_path / "cache" / "banking77" / "test.csv"
    with pytest.raises(DownloadError, match="checksum mismatch") as info:
        download(Remote(source.as_uri(), "ab" * 32, "test"), dest)
    actual = hashlib.sha256(source.read_bytes()).hexdigest()
    assert actual in str(info.value)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no partial file left


def test_archive_download_unpacks_both_newsgroup_folders(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path
) -> None:
    monkeypatch.delenv("CLASSIFIER_OFFLINE")
    monkeypatch.delenv("CLASSIFIER_DATA_DIR", raising=False)
    buf = io.BytesIO()
    real = data_dir / "20newsgroups"
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for split in ("20news-bydate-train", "20news-bydate-test"):
            for group in ("sci.space", "rec.autos"):
                for f in sorted((real / split / group).iterdir())[:3]:
                    tar.add(f, arcname=f"{split}/{group}/{f.name}")
    archive = tmp_path / "20news-bydate.tar.gz"
    archive.write_bytes(buf.getvalue())
    remote = Remote(
        archive.as_uri(), hashlib.sha256(buf.getvalue()).hexdigest(), "test", archive=True
    )
    spec = NAMED_DATASETS["20newsgroups"]
    for path in ("20news-bydate-train", "20news-bydate-test"):
        monkeypatch.setitem(spec.remotes, path, remote)
    data = load_named("20newsgroups", None)
    assert data.train.class_counts() == {"rec.autos": 3, "sci.space": 3}
    assert data.test is not None
    assert len(data.test) == 6
    assert not (cache / "20newsgroups" / ".downloads" / archive.name).exists()
