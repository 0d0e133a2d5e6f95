"""Named datasets: where their files live, how to read them, where to download them.

Each named dataset is a folder of files in its publisher's layout. A file is looked for,
in order, in:

1. the data directory (``--data-dir``, else ``$CLASSIFIER_DATA_DIR``), under the dataset's
   folder name (or an alias, e.g. ``japanese/`` for ``livedoor``);
2. the per-user cache (:func:`training.download.cache_dir`), under the folder name;
3. the publisher's address, downloaded into the cache with its sha256 verified, when a
   checksum is known and downloads are allowed (``$CLASSIFIER_OFFLINE`` unset).

If none works, :class:`~training.data.DatasetError` names the missing file and the folders
to put it in.

(Just over 400 lines: half of it is the registry table of the five datasets, with their
URLs, checksums and provenance, which reads best in one place.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.data import (
    DATA_DIR_ENV,
    DatasetError,
    TextDataset,
    load_folder,
    load_table,
    resolve_data_dir,
)
from training.download import (
    OFFLINE_ENV,
    DownloadError,
    Remote,
    cache_dir,
    download,
    downloads_allowed,
    extract_tar,
)

#: Parts of a 20 Newsgroups message that ``newsgroups_remove`` can strip (as in
#: scikit-learn's ``fetch_20newsgroups(remove=...)``).
NEWSGROUP_PARTS = ("headers", "footers", "quotes")

#: AG News class indices → names, from the release's ``classes.txt``.
AG_NEWS_CLASSES = {"1": "World", "2": "Sports", "3": "Business", "4": "Sci/Tech"}


class MissingFileError(DatasetError):
    """A named dataset's file is nowhere to be found and could not be downloaded.

    Attributes:
        relative: The file, relative to the dataset's folder.
        places: The folders it may be put in (data directory, cache).
        why: Why it was not downloaded.
    """

    def __init__(self, message: str, relative: str, places: list[str], why: str) -> None:
        super().__init__(message)
        self.relative = relative
        self.places = places
        self.why = why


@dataclass(frozen=True)
class LoadedDataset:
    """A named dataset read from disk.

    Attributes:
        name: The dataset's name (``bbc``, …).
        train: Training rows (all rows when the dataset has no split of its own).
        test: The dataset's own held-out test split; ``None`` when it defines none (then
            training makes a stratified, seeded one).
        notes: Facts a user must know about this copy (e.g. training on a subset).
    """

    name: str
    train: TextDataset
    test: TextDataset | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NamedDataset:
    """How to find and read one named dataset.

    Attributes:
        name: CLI name (``--dataset``).
        folder: Folder name in the data directory and in the cache.
        description: One line: what it is, its size and its source.
        layout: The files the loader reads, relative to the folder.
        lang: ``en`` or ``ja`` (Japanese selects word segmentation, no stopwords).
        own_split: The publisher defines a train/test split.
        aliases: Other folder names accepted in the data directory.
        remotes: Relative path → the download that provides it (a file, or an archive
            holding that folder). Paths without one must be put in place by hand.
        manual: Where to get the files by hand when no checksummed download is known.
    """

    name: str
    folder: str
    description: str
    layout: str
    lang: str
    own_split: bool
    aliases: tuple[str, ...] = ()
    remotes: Mapping[str, Remote] = field(default_factory=dict)
    manual: str = ""


_NEWSGROUPS_ARCHIVE = Remote(
    url="https://ndownloader.figshare.com/files/5975967",
    sha256="8f1b2514ca22a5ade8fbb9cfa5727df95fa587f4c87b786e15c759fa66d95610",
    provenance="scikit-learn sklearn/datasets/_twenty_newsgroups.py (ARCHIVE): the bydate "
    "archive of Jason Rennie's 20 Newsgroups page, mirrored on figshare",
    archive=True,
    filename="20news-bydate.tar.gz",
)
_AG_NEWS_BASE = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv"
_AG_NEWS_PROVENANCE = (
    "the ag_news_csv copy torchtext's AG_NEWS loader downloads (PROVENANCE.md of ag_news/)"
)
_BANKING77_BASE = (
    "https://raw.githubusercontent.com/PolyAI-LDN/task-specific-datasets/master/banking_data"
)
_BANKING77_PROVENANCE = (
    "PolyAI's task-specific-datasets repository; sha256 from Hugging Face datasets "
    "datasets/banking77/dataset_infos.json (download_checksums)"
)


def _csv_pair(
    base: str, provenance: str, *, train_sha256: str, test_sha256: str, train_note: str = ""
) -> dict[str, Remote]:
    """``train.csv`` and ``test.csv`` under the URL ``base``, with their sha256 and source."""
    return {
        "train.csv": Remote(f"{base}/train.csv", train_sha256, provenance + train_note),
        "test.csv": Remote(f"{base}/test.csv", test_sha256, provenance),
    }


NAMED_DATASETS: dict[str, NamedDataset] = {
    "bbc": NamedDataset(
        name="bbc",
        folder="bbc",
        description="BBC News, 2,225 articles, 5 topics (Greene & Cunningham 2006), "
        "the Keras-tutorial CSV",
        layout="bbc-text.csv (header category,text)",
        lang="en",
        own_split=False,
        remotes={
            "bbc-text.csv": Remote(
                url="https://storage.googleapis.com/laurencemoroney-blog.appspot.com/bbc-text.csv",
                sha256="fdaee0f7451cd8db2709d00e992886fe1c387ee332b8c7b7c1554ed3d3e3382e",
                provenance="the address the DeepLearning.AI / Keras NLP course notebooks "
                "download it from; sha256 from bbc/PROVENANCE.md",
            )
        },
    ),
    "ag_news": NamedDataset(
        name="ag_news",
        folder="ag_news",
        description="AG News, 4 topics, 120,000 train / 7,600 test (Zhang, Zhao & LeCun 2015)",
        layout="train.csv (or train-subset-20k.csv), test.csv: header-less "
        "class,title,description; classes.txt",
        lang="en",
        own_split=True,
        remotes=_csv_pair(
            _AG_NEWS_BASE,
            _AG_NEWS_PROVENANCE,
            train_sha256="76a0a2d2f92b286371fe4d4044640910a04a803fdd2538e0f3f29a5c6f6b672e",
            test_sha256="521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699",
            train_note="; sha256 from the Git LFS pointer listed there (29,470,338 bytes)",
        ),
    ),
    "20newsgroups": NamedDataset(
        name="20newsgroups",
        folder="20newsgroups",
        description="20 Newsgroups, bydate split: 11,314 train / 7,532 test messages, "
        "20 groups (Lang 1995; Rennie)",
        layout="20news-bydate-train/<group>/<id>, 20news-bydate-test/<group>/<id> (latin-1)",
        lang="en",
        own_split=True,
        remotes={
            "20news-bydate-train": _NEWSGROUPS_ARCHIVE,
            "20news-bydate-test": _NEWSGROUPS_ARCHIVE,
        },
    ),
    "banking77": NamedDataset(
        name="banking77",
        folder="banking77",
        description="BANKING77, online-banking questions, 77 intents: 10,003 train / "
        "3,080 test (Casanueva et al. 2020)",
        layout="train.csv, test.csv (header text,category)",
        lang="en",
        own_split=True,
        remotes=_csv_pair(
            _BANKING77_BASE,
            _BANKING77_PROVENANCE,
            train_sha256="b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b",
            test_sha256="d12d6e3bc4c3103966ae786dc435913c0c563dfa328f5a3646d0e62cfeeb474d",
        ),
    ),
    "livedoor": NamedDataset(
        name="livedoor",
        folder="livedoor",
        description="livedoor News Corpus (Japanese), 7,367 articles, 9 categories "
        "(RONDHUIT, ldcc-20140209)",
        layout="text/<category>/<category>-<id>.txt (line 1 URL, 2 date, 3 title, then body)",
        lang="ja",
        own_split=False,
        aliases=("japanese",),
        manual="download https://www.rondhuit.com/download/ldcc-20140209.tar.gz (publisher "
        "page https://www.rondhuit.com/download.html#ldcc; no published checksum, so it is "
        "not downloaded automatically) and unpack it there",
    ),
}


def dataset_spec(name: str) -> NamedDataset:
    """The :class:`NamedDataset` called ``name``.

    Raises:
        DatasetError: unknown name (the message lists the known ones).
    """
    try:
        return NAMED_DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(NAMED_DATASETS))}"
        ) from None


def _data_root(data_dir: str | Path | None) -> Path | None:
    if data_dir is None and not os.environ.get(DATA_DIR_ENV):
        return None
    return resolve_data_dir(data_dir)


def locate(
    spec: NamedDataset,
    relative: str,
    data_dir: str | Path | None = None,
    allow_download: bool = True,
) -> Path:
    """Path of one file or folder of a named dataset: data directory → cache → download.

    Args:
        spec: The dataset.
        relative: Path inside the dataset's folder (e.g. ``test.csv``).
        data_dir: ``--data-dir``; ``None`` uses ``$CLASSIFIER_DATA_DIR`` if set.
        allow_download: Also try the publisher's address (still refused when
            ``$CLASSIFIER_OFFLINE`` is set).

    Raises:
        MissingFileError: not found anywhere; the message names the file and the folder(s)
            to put it in, and why it was not downloaded.
        DatasetError: a given data directory does not exist.
    """
    root = _data_root(data_dir)
    if root is not None:
        for folder in (spec.folder, *spec.aliases):
            candidate = root / folder / relative
            if candidate.exists():
                return candidate
    cached_folder = cache_dir() / spec.folder
    if (cached_folder / relative).exists():
        return cached_folder / relative

    remote = spec.remotes.get(relative)
    if remote is None:
        why = spec.manual or "no download address with a known sha256 exists for it"
    elif not (allow_download and downloads_allowed()):
        why = f"downloads are off (--no-download or ${OFFLINE_ENV}); its address is {remote.url}"
    else:
        try:
            return _fetch(spec, remote, relative, cached_folder)
        except DownloadError as exc:
            why = str(exc)
    places = [str(root / spec.folder)] if root is not None else []
    places.append(str(cached_folder))
    raise MissingFileError(
        f"dataset {spec.name!r}: {relative} not found and not downloadable ({why}). "
        f"Put {relative} into {' or '.join(places)} "
        f"(layout: {spec.layout}; see the dataset's PROVENANCE.md)",
        relative,
        places,
        why,
    )


def _fetch(spec: NamedDataset, remote: Remote, relative: str, folder: Path) -> Path:
    if not remote.archive:
        return download(remote, folder / relative)
    archive = download(remote, folder / ".downloads" / remote.name)
    try:  # unpack every path this archive provides (20 Newsgroups: train and test)
        extract_tar(archive, folder, [p for p, r in spec.remotes.items() if r == remote])
    finally:
        archive.unlink(missing_ok=True)
    return folder / relative


def _ag_news(spec: NamedDataset, data_dir: str | Path | None, allow: bool) -> LoadedDataset:
    def read(path: Path) -> TextDataset:
        names = dict(AG_NEWS_CLASSES)
        classes = path.parent / "classes.txt"
        if classes.is_file():
            lines = [line.strip() for line in classes.read_text("utf-8").splitlines()]
            names = {str(i): n for i, n in enumerate(filter(None, lines), start=1)}
        return load_table(path, ["1", "2"], "0", fmt="csv", header=False, label_names=names)

    test = read(locate(spec, "test.csv", data_dir, allow))
    notes: list[str] = []
    try:
        train_path = locate(spec, "train.csv", data_dir, allow)
    except MissingFileError as full_missing:
        try:
            train_path = locate(spec, "train-subset-20k.csv", data_dir, allow_download=False)
        except DatasetError:
            raise full_missing from None
        notes.append(
            f"AG News: training on the 20,000-row subset {train_path.name} (5,000 rows a "
            "class), because the full 120,000-row train.csv is not in "
            f"{' or '.join(full_missing.places)} and was not downloaded ({full_missing.why}). "
            "Test accuracy is not comparable with published AG News results."
        )
    return LoadedDataset(spec.name, read(train_path), test, tuple(notes))


def _newsgroups(
    spec: NamedDataset, data_dir: str | Path | None, allow: bool, remove: Sequence[str]
) -> LoadedDataset:
    unknown = set(remove) - set(NEWSGROUP_PARTS)
    if unknown:
        raise DatasetError(f"cannot remove {sorted(unknown)}; choose from {NEWSGROUP_PARTS}")
    train = load_folder(locate(spec, "20news-bydate-train", data_dir, allow), "latin-1")
    test = load_folder(locate(spec, "20news-bydate-test", data_dir, allow), "latin-1")
    notes = []
    if remove:
        train, test = _strip_newsgroups(train, remove), _strip_newsgroups(test, remove)
        notes.append(f"20 Newsgroups: removed {', '.join(remove)} from every message")
    return LoadedDataset(spec.name, train, test, tuple(notes))


def _strip_newsgroups(data: TextDataset, remove: Sequence[str]) -> TextDataset:
    """Strip message parts exactly as ``fetch_20newsgroups(remove=...)`` does."""
    from sklearn.datasets._twenty_newsgroups import (
        strip_newsgroup_footer,
        strip_newsgroup_header,
        strip_newsgroup_quoting,
    )

    steps: list[Callable[[str], str]] = []
    if "headers" in remove:
        steps.append(strip_newsgroup_header)
    if "footers" in remove:
        steps.append(strip_newsgroup_footer)
    if "quotes" in remove:
        steps.append(strip_newsgroup_quoting)
    texts = []
    for text in data.texts:
        for step in steps:
            text = step(text)
        texts.append(text)
    return TextDataset(texts, list(data.labels), data.source, data.sha256, data.rows)


def _livedoor(spec: NamedDataset, data_dir: str | Path | None, allow: bool) -> LoadedDataset:
    raw = load_folder(locate(spec, "text", data_dir, allow), "utf-8", exclude={"LICENSE.txt"})
    # Drop line 1 (URL) and line 2 (date): they identify the source, not the topic.
    texts = ["\n".join(text.split("\n")[2:]).strip() for text in raw.texts]
    return LoadedDataset(spec.name, TextDataset(texts, raw.labels, raw.source, raw.sha256), None)


def load_named(
    name: str,
    data_dir: str | Path | None = None,
    allow_download: bool = True,
    newsgroups_remove: Sequence[str] = (),
) -> LoadedDataset:
    """Read a named dataset (see :data:`NAMED_DATASETS` and the module docstring).

    Args:
        name: ``bbc``, ``ag_news``, ``20newsgroups``, ``banking77`` or ``livedoor``.
        data_dir: Data directory; ``None`` uses ``$CLASSIFIER_DATA_DIR`` if set.
        allow_download: Download missing files with a known checksum into the cache.
        newsgroups_remove: For ``20newsgroups``: any of ``headers``, ``footers``,
            ``quotes`` to strip from each message.

    Raises:
        DatasetError: unknown name, missing files (with where to put them), bad rows.
    """
    spec = dataset_spec(name)
    if newsgroups_remove and name != "20newsgroups":
        raise DatasetError("newsgroups_remove applies only to the 20newsgroups dataset")
    if name == "ag_news":
        return _ag_news(spec, data_dir, allow_download)
    if name == "20newsgroups":
        return _newsgroups(spec, data_dir, allow_download, newsgroups_remove)
    if name == "livedoor":
        return _livedoor(spec, data_dir, allow_download)
    if name == "bbc":
        path = locate(spec, "bbc-text.csv", data_dir, allow_download)
        return LoadedDataset(name, load_table(path, "text", "category"), None)
    train = load_table(locate(spec, "train.csv", data_dir, allow_download), "text", "category")
    test = load_table(locate(spec, "test.csv", data_dir, allow_download), "text", "category")
    return LoadedDataset(name, train, test)
