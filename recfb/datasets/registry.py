"""The datasets recfb knows: where they come from, their files and checksums, how to read them.

One :class:`DatasetSpec` per dataset. The checksums are those of the reference copies
described in ``datasets/<name>.md`` (and in the shared datasets README): the files exactly
as the original authors distribute them, except where a card says otherwise.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recfb.datasets import coat, lastfm, modcloth, movielens, sequential, synthetic

__all__ = ["DATASETS", "DatasetSpec", "get_spec", "info", "list_datasets"]

_GROUPLENS_LICENCE = (
    "GroupLens research licence (see the README in the archive): research use only; cite Harper & Konstan 2015; "
    "do not imply endorsement; NO redistribution without separate permission; no commercial use without "
    "permission from GroupLens.")
_GROUPLENS_CITATION = (
    "F. Maxwell Harper and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. ACM Transactions "
    "on Interactive Intelligent Systems (TiiS) 5, 4, Article 19. https://doi.org/10.1145/2827872")
_AMAZON_NOTE = "The underlying Amazon review data is Julian McAuley's (UCSD), released for research use."


@dataclass(frozen=True)
class DatasetSpec:
    """Everything recfb knows about one dataset.

    Attributes
    ----------
    name : str
        The name ``load`` takes.
    description : str
    folder : str or None
        Folder name under a data dir / the cache (``<data_dir>/<folder>/<original files>``);
        None for generated datasets.
    files : dict
        Relative path -> SHA-256 of every known file of the reference copy.
    required : tuple of tuples
        Files the loader needs; each inner tuple lists alternatives, one of which must exist.
    loader : callable
        ``loader(folder) -> Interactions | dataclass`` (``loader(None)`` for generated data).
    returns : str
        What ``load`` returns.
    url : str or None
        The canonical archive (None when the authors publish no archive; ``how_to_get`` says why).
    archive_sha256, archive_md5 : str or None
        Checksums of the archive at ``url``, where published or known.
    download_checked : tuple of str
        Files whose SHA-256 (from ``files``) is checked after every download and extraction.
    how_to_get : str
        How to obtain the files by hand.
    homepage, licence, citation : str
    counts : dict
        Published sizes (rows, users, items ...), checked by the tests on the real files.
    item_names : callable or None
        ``item_names(folder) -> {external item id: title}``.
    aliases : tuple of str
        Other folder names accepted under a data dir.
    """

    name: str
    description: str
    folder: str | None
    files: dict
    required: tuple
    loader: Callable[[Path | None], Any]
    returns: str
    url: str | None
    how_to_get: str
    homepage: str
    licence: str
    citation: str
    archive_sha256: str | None = None
    archive_md5: str | None = None
    download_checked: tuple = ()
    counts: dict = field(default_factory=dict)
    item_names: Callable[[Path], dict] | None = None
    aliases: tuple = ()

    @property
    def generated(self) -> bool:
        """True for datasets built in memory (no files)."""
        return self.folder is None

    @property
    def folder_names(self) -> tuple:
        """Folder names searched under each data dir: ``folder``, the dataset name, aliases."""
        names = [self.folder, self.name, *self.aliases]
        return tuple(dict.fromkeys(n for n in names if n))

    def missing(self, folder: Path) -> list:
        """Required files absent from ``folder`` (each as 'a or b' for alternatives)."""
        return [" or ".join(group) for group in self.required
                if not any((Path(folder) / rel).is_file() for rel in group)]

    def to_dict(self) -> dict:
        """Plain JSON-serialisable metadata (no loader)."""
        return {
            "name": self.name, "description": self.description, "returns": self.returns,
            "folder": self.folder, "url": self.url, "archive_sha256": self.archive_sha256,
            "archive_md5": self.archive_md5, "how_to_get": self.how_to_get, "homepage": self.homepage,
            "licence": self.licence, "citation": self.citation, "counts": dict(self.counts),
            "required": [list(g) for g in self.required], "files": dict(self.files),
            "has_item_names": self.item_names is not None,
        }


_SPECS = (
    DatasetSpec(
        name="ml-100k",
        description="MovieLens 100K: 100,000 ratings (1-5) with unix timestamps by 943 users on 1,682 movies "
                    "(GroupLens, 1998). Every user has at least 20 ratings.",
        folder="ml-100k",
        files={
            "README": "d5f41f88d1a96b8faefed3c2f51fce1fca3be1ba6ab0d06e346898ffae920de9",
            "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
            "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
            "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
            "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
            "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
            "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
            "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
            "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
            "u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
            "u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
            "u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
            "u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
            "u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
            "u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
            "u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
            "u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
            "ua.base": "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2",
            "ua.test": "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42",
            "ub.base": "237254d253b6ad7de84f919d041055428646254f34ed8f562703c899430cd881",
            "ub.test": "d54a72d05730d5892062734b2bec73e976f9b713d18c828a18b968d6cce442da",
        },
        required=(("u.data",),),
        loader=movielens.load_ml_100k,
        returns="Interactions (values = ratings 1-5, timestamps = unix seconds)",
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        # GroupLens publishes MD5s; this value is recorded identically by several independent projects
        archive_md5="0e33842e24a9c977be4e0107933c0723",
        download_checked=("u.data", "u.item"),
        how_to_get="Download https://files.grouplens.org/datasets/movielens/ml-100k.zip (GroupLens) and unzip it.",
        homepage="https://grouplens.org/datasets/movielens/100k/",
        licence=_GROUPLENS_LICENCE,
        citation=_GROUPLENS_CITATION,
        counts={"rows": 100_000, "users": 943, "items": 1_682},
        item_names=movielens.ml_100k_item_names,
    ),
    DatasetSpec(
        name="ml-1m",
        description="MovieLens 1M: 1,000,209 ratings by 6,040 users on 3,706 movies (GroupLens, 2003). From "
                    "ratings.dat when present; otherwise the implicit (user, movie) pairs of ratings.parquet / "
                    "ratings_user_item_pairs.tsv.gz, without ratings or timestamps (a warning says so).",
        folder="ml-1m",
        files={
            "README": "dc90e3a7a0786854ef5b93ace2f3187b67e0a19650a51725d40086d8495c2c72",
            "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
            "ratings.parquet": "b354c7081dd0a6ca6b2711d6ae48d057ade864332ae90e28856372997d88994f",
            "ratings_user_item_pairs.tsv.gz": "8f6589cb7f44ad98749b167b5005f1dfefb238d9b4b347e3bc4ff29b97854f55",
            "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
        },
        required=(("ratings.dat", "ratings.parquet", "ratings_user_item_pairs.tsv.gz"),),
        loader=movielens.load_ml_1m,
        returns="Interactions (from ratings.dat: values = ratings, timestamps; from the pairs: neither)",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        archive_md5="c4d9eecfca2ab87c1945afe126590906",
        download_checked=("movies.dat", "users.dat"),
        how_to_get="Download https://files.grouplens.org/datasets/movielens/ml-1m.zip (GroupLens) and unzip it.",
        homepage="https://grouplens.org/datasets/movielens/1m/",
        licence=_GROUPLENS_LICENCE,
        citation=_GROUPLENS_CITATION,
        counts={"rows": 1_000_209, "users": 6_040, "items": 3_706},
        item_names=movielens.ml_1m_item_names,
    ),
    DatasetSpec(
        name="coat",
        description="Coat (Schnabel et al., ICML 2016): 290 users x 300 coats; 6,960 self-selected (MNAR) training "
                    "ratings and 4,640 ratings of uniformly random items (MAR test), user/item features and "
                    "learned propensities.",
        folder="coat",
        files={
            "README.txt": "cda6f0f12aa148f5391561ef95a5f2dd6f7e3838ec17e84fcb615bc11a7ffae0",
            "propensities.ascii": "d1b11b12465dc6e1df35eeed92dfec5e17a997f920d60777cc44571fe9b054e5",
            "test.ascii": "de6714ab105a5e0be8166be7fd313901b29f9a09c3bea307901457d1d71847e6",
            "train.ascii": "a87bd9e7eaf3b89f976df3f25d4aa5d5d871be8a00b58947df9e6e015559bd37",
            "user_item_features/item_features.ascii":
                "edea8217ec5606779b4d3bf819f7591dc63bcd5194d619e8048c2322d07630b1",
            "user_item_features/item_features_map.txt":
                "70f97e53b6469a08ba76d259e92de9a4931f97693d2669f8e8836330d30fc109",
            "user_item_features/user_features.ascii":
                "d8f9531b601c54a7272602f8b21fa6cb4652cbf122e35d8615ea9645ebbf1b1f",
            "user_item_features/user_features_map.txt":
                "86dfa86c468f2213b0a7acab072cc8e4bd66d05ed050d1e1f2f452c1e9fd195b",
        },
        required=(("train.ascii",), ("test.ascii",), ("propensities.ascii",),
                  ("user_item_features/user_features.ascii",), ("user_item_features/item_features.ascii",)),
        loader=coat.load_coat,
        returns="CoatData (train MNAR / test MAR Interactions in one id space, features, propensities)",
        url="https://www.cs.cornell.edu/~schnabts/mnar/coat.zip",
        # files two independent copies agree on byte for byte (the others differ in line endings)
        download_checked=("train.ascii", "test.ascii", "user_item_features/user_features.ascii",
                          "user_item_features/item_features.ascii"),
        how_to_get="Download https://www.cs.cornell.edu/~schnabts/mnar/coat.zip (the authors' MNAR page) "
                   "and unzip it.",
        homepage="https://www.cs.cornell.edu/~schnabts/mnar/",
        licence="No licence is stated in the archive; the authors published it for research. Cite Schnabel et al. "
                "2016.",
        citation="Tobias Schnabel, Adith Swaminathan, Ashudeep Singh, Navin Chandak, Thorsten Joachims. 2016. "
                 "Recommendations as Treatments: Debiasing Learning and Evaluation. ICML 2016.",
        counts={"train_rows": 6_960, "test_rows": 4_640, "users": 290, "items": 300},
    ),
    DatasetSpec(
        name="lastfm-2k",
        description="Last.fm HetRec 2011 (hetrec2011-lastfm-2k): 92,834 user-artist play counts by 1,892 users on "
                    "17,632 artists; ids are Last.fm's original, non-contiguous ones.",
        folder="lastfm-hetrec2011",
        aliases=("hetrec2011-lastfm-2k",),
        files={
            "artists.dat": "c173881362c6b28551368fecb3c0be5a6a30a6cd859e1f5775413dfe46d48648",
            "readme.txt": "44c38757b3a24e68e844ac60c97ba7fd8e0f691cf1b00e9cf6bd8854df0dd64a",
            "tags.dat": "e95175f259be4c0c47644ae23d66131cd6d5767142a1405000e79f5584691d70",
            "user_artists.dat": "001400dc3c7d2667fca6e4ea6dc6acc31a9dd28ad5cd0f74cea988c019934d3b",
            "user_friends.dat": "9a3a8f7fa5f5ec832335e5b58ed69a4cf27c6f6f6afcde62134810eea46445a7",
            "user_taggedartists.dat": "d31fe938fcfeed6f0059f37a36b156f63674d073fc2553e5cc9dc1595e365bc7",
        },
        required=(("user_artists.dat",),),
        loader=lastfm.load_lastfm_2k,
        returns="Interactions (values = play counts)",
        url="https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip",
        # the files several independent copies agree on byte for byte
        download_checked=("artists.dat", "tags.dat", "user_friends.dat"),
        how_to_get="Download https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip (GroupLens) "
                   "and unzip it.",
        homepage="https://grouplens.org/datasets/hetrec-2011/",
        licence="Non-commercial use only (readme.txt: 'made available for non-commercial use'); contact Last.fm "
                "for commercial use. Cite Last.fm and the HetRec 2011 workshop.",
        citation="Iván Cantador, Peter Brusilovsky, Tsvi Kuflik. 2011. 2nd Workshop on Information Heterogeneity "
                 "and Fusion in Recommender Systems (HetRec 2011). RecSys 2011. http://www.lastfm.com",
        counts={"rows": 92_834, "users": 1_892, "items": 17_632},
        item_names=lastfm.lastfm_2k_artist_names,
    ),
    DatasetSpec(
        name="video",
        description="Amazon Video Games in SASRec's preprocessing (Video.txt): 287,107 actions by 31,013 users on "
                    "23,715 items, one 'user item' line per action in per-user time order (no timestamps).",
        folder="sasrec-video",
        files={"Video.txt": "b7376fe24430743f411dc7f567285657b2adb3f74361cc7ba0aee94f3024b651"},
        required=(("Video.txt",),),
        loader=sequential.load_sasrec_video,
        returns="Interactions in file order (timestamps None; use sequences(by='row'), leave_one_out(by='row'))",
        url=None,
        how_to_get="There is no official archive: the SASRec authors distribute Video.txt only inside their code "
                   "repository, and recfb does not fetch files from code repositories. Copy data/Video.txt from "
                   "https://github.com/kang205/SASRec by hand.",
        homepage="https://github.com/kang205/SASRec",
        licence="SASRec repository: Apache-2.0; its README asks to cite the paper when using the code or data. "
                + _AMAZON_NOTE,
        citation="Wang-Cheng Kang and Julian McAuley. 2018. Self-Attentive Sequential Recommendation. ICDM 2018.",
        counts={"rows": 287_107, "users": 31_013, "items": 23_715},
    ),
    DatasetSpec(
        name="beauty",
        description="Amazon Beauty (5-core) in S3-Rec's preprocessing (Beauty.txt): 198,502 actions by 22,363 users "
                    "on 12,101 items, one 'user item_1 ... item_n' line per user in time order (no timestamps).",
        folder="s3rec-beauty",
        files={
            "Beauty.txt": "226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
            "Beauty_item2attributes.json": "129e40f67486f6877eff0f5318cfa8530ee8ac23d8b0d1de04e1bb7a2ba0b2d4",
        },
        required=(("Beauty.txt",),),
        loader=sequential.load_s3rec_beauty,
        returns="Interactions in sequence order (timestamps None; use sequences(by='row'))",
        url=None,
        how_to_get="There is no official archive: the S3-Rec authors distribute Beauty.txt only inside their code "
                   "repository, and recfb does not fetch files from code repositories. Copy data/Beauty.txt from "
                   "https://github.com/RUCAIBox/CIKM2020-S3Rec by hand.",
        homepage="https://github.com/RUCAIBox/CIKM2020-S3Rec",
        licence="No licence file in the S3-Rec repository. " + _AMAZON_NOTE,
        citation="Kun Zhou, Hui Wang, Wayne Xin Zhao, Yutao Zhu, Sirui Wang, Fuzheng Zhang, Zhongyuan Wang, "
                 "Ji-Rong Wen. 2020. S3-Rec: Self-Supervised Learning for Sequential Recommendation with Mutual "
                 "Information Maximization. CIKM 2020.",
        counts={"rows": 198_502, "users": 22_363, "items": 12_101},
    ),
    DatasetSpec(
        name="modcloth-deca",
        description="ModCloth ratings as split by DeCA for denoising: every row is a positive and its 1-5 rating "
                    "tells clean from noisy ones; train 79,914 / valid 9,990 / test 9,989 (noisy) / 5,433 "
                    "(clean, rating 5); 44,784 users x 1,020 items.",
        folder="modcloth-deca",
        aliases=("modcloth",),
        files={
            "modcloth.test.negative": "83c9d9cd457733a364d42cff5298d82413892d46292522590ac3449372558387",
            "modcloth.test.noisy": "19e35598ad18039061cdcbf04b55635eda7e6f43ce48f9f6312c2ee21d86fdd4",
            "modcloth.train.rating": "e4698402116e8b621c66c79405b0309df8da9991fa6669dd9f2768acf7559ced",
            "modcloth.valid.rating": "216e8b73e746972087833ebc5b94ac0f1667041ab2be5efd3472c75d4526d511",
        },
        required=tuple((name,) for name in modcloth.FILES.values()),
        loader=modcloth.load_modcloth_deca,
        returns="ModClothData (train / valid / test_noisy / test_clean Interactions in one id space, "
                "values = ratings)",
        url=None,
        how_to_get="There is no official archive of this split: DeCA's authors distribute it only inside their "
                   "code repository, and recfb does not fetch files from code repositories. Copy data/modcloth/ "
                   "from https://github.com/wangyu-ustc/DeCA by hand.",
        homepage="https://github.com/wangyu-ustc/DeCA",
        licence="No licence file in the DeCA repository; its README asks to cite Wan et al. 2020 for the data. The "
                "underlying ModCloth data is from Julian McAuley's group (UCSD), for research use.",
        citation="Mengting Wan, Jianmo Ni, Rishabh Misra, Julian McAuley. 2020. Addressing Marketing Bias in Product "
                 "Recommendations. WSDM 2020. Split: Yu Wang, Xin Xin, Zaiqiao Meng, Joemon M. Jose, Fuli Feng, "
                 "Xiangnan He. 2022. Learning Robust Recommenders through Cross-Model Agreement. WWW 2022.",
        counts={"train_rows": 79_914, "valid_rows": 9_990, "test_noisy_rows": 9_989, "test_clean_rows": 5_433,
                "users": 44_784, "items": 1_020},
    ),
    DatasetSpec(
        name="synthetic",
        description="A seeded synthetic world (recfb.datasets.make_world()): 1,000 users x 500 items with known true "
                    "relevance, popularity-biased exposure and an observed click rate of about 5%. load() returns "
                    "its clicks; call make_world() for the truth.",
        folder=None,
        files={},
        required=(),
        loader=lambda folder: synthetic.make_world().clicks,
        returns="Interactions (make_world().clicks: timestamps strictly increasing, values None)",
        url=None,
        how_to_get="Generated in memory; nothing to download.",
        homepage="",
        licence="Generated data; no restrictions.",
        citation="",
        counts={"users": 1_000, "items": 500},
    ),
)

DATASETS: dict = {spec.name: spec for spec in _SPECS}


def get_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; an unknown name raises ValueError listing the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__} ({name!r}).")
    spec = DATASETS.get(name) or DATASETS.get(name.strip().lower())
    if spec is None:
        close = difflib.get_close_matches(name.lower(), list(DATASETS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(DATASETS)}.")
    return spec


def list_datasets() -> list:
    """Names of the known datasets, in registry order."""
    return list(DATASETS)


def info(name: str) -> dict:
    """Metadata of a dataset as a plain dict: description, source URL, licence, citation, counts,
    files with their SHA-256 (see :meth:`DatasetSpec.to_dict`)."""
    return get_spec(name).to_dict()
