"""Every real loader against the shared datasets (counts from their README), and malformed
files: a truncated or corrupted file must raise DataError naming the file and the line."""
import gzip
import shutil
import warnings

import numpy as np
import pytest

from recfb import datasets
from recfb.data import Interactions, split
from recfb.datasets import coat, modcloth, movielens, sequential
from recfb.utils.errors import DataError


def _ids(data, internal_users):
    return data.user_ids[internal_users]


# ----------------------------------------------------------------------------- real data
def test_ml_100k_counts_values_and_file_order(shared_data):
    data = datasets.load("ml-100k", data_dir=shared_data, download=False)
    assert isinstance(data, Interactions)
    assert len(data) == 100_000 and data.shape == (943, 1_682)
    assert data.user_ids.tolist() == list(range(1, 944)) and data.item_ids[-1] == 1682
    ratings, counts = np.unique(data.values, return_counts=True)
    assert ratings.tolist() == [1, 2, 3, 4, 5] and counts.tolist() == [6_110, 11_370, 27_145, 34_174, 21_201]
    assert data.timestamps.min() == 874_724_710 and data.timestamps.max() == 893_286_638
    # rows keep the file order: u.data starts "196 242 3 881250949"
    assert (data.user_ids[data.users[0]], data.item_ids[data.items[0]], data.values[0], data.timestamps[0]) == \
        (196, 242, 3.0, 881_250_949)
    assert data.matrix.nnz == 100_000 and np.diff(data.matrix.indptr).min() == 20


def test_ml_100k_item_names(shared_data):
    names = datasets.load_item_names("ml-100k", data_dir=shared_data, download=False)
    assert len(names) == 1_682 and names[1] == "Toy Story (1995)"
    with pytest.raises(ValueError, match="no item names; datasets with names: ml-100k, ml-1m, lastfm-2k"):
        datasets.load_item_names("video", data_dir=shared_data)


def test_verify_checks_local_files_against_the_registry(shared_data):
    assert datasets.verify("ml-100k", data_dir=shared_data) == shared_data / "ml-100k"
    assert len(datasets.load("coat", data_dir=shared_data, verify=True).train) == 6_960


def test_ml_1m_pairs_warn_that_ratings_and_times_are_missing(shared_data):
    with pytest.warns(datasets.IncompleteDatasetWarning, match="no ratings and no timestamps"):
        data = datasets.load("ml-1m", data_dir=shared_data, download=False)
    assert len(data) == 1_000_209 and data.n_users == 6_040 and data.n_items == 3_706
    assert data.values is None and data.timestamps is None
    assert data.user_ids[data.users[:4]].tolist() == [1] * 4
    assert data.item_ids[data.items[:4]].tolist() == [1193, 661, 914, 3408]
    assert len(datasets.load_item_names("ml-1m", data_dir=shared_data)) == 3_883


def test_ml_1m_parquet_gives_the_same_rows_as_the_tsv(shared_data, tmp_path):
    pytest.importorskip("pyarrow")
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    shutil.copy(shared_data / "ml-1m" / "ratings.parquet", folder)
    with pytest.warns(datasets.IncompleteDatasetWarning, match="ratings.parquet"):
        from_parquet = movielens.load_ml_1m(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", datasets.IncompleteDatasetWarning)
        from_tsv = movielens.load_ml_1m(shared_data / "ml-1m")
    assert np.array_equal(from_parquet.users, from_tsv.users) and np.array_equal(from_parquet.items, from_tsv.items)


def test_coat_train_mnar_and_test_mar_share_one_id_space(shared_data):
    data = datasets.load("coat", data_dir=shared_data, download=False)
    assert isinstance(data, datasets.CoatData)
    train, test = data.train, data.test
    assert len(train) == 6_960 and len(test) == 4_640
    assert train.user_map is test.user_map and train.item_map is test.item_map
    assert train.matrix.shape == test.matrix.shape == (290, 300)
    assert set(np.bincount(train.users).tolist()) == {24} and set(np.bincount(test.users).tolist()) == {16}
    assert np.bincount(train.values.astype(int))[1:].tolist() == [1_901, 1_437, 1_717, 1_275, 630]
    assert np.bincount(test.values.astype(int))[1:].tolist() == [1_879, 899, 1_002, 641, 219]
    assert train.matrix.multiply(test.matrix).nnz == 366
    assert data.user_features.shape == (290, 14) and data.item_features.shape == (300, 33)
    assert set(data.user_features.sum(axis=1).tolist()) == {4.0} and set(data.item_features.sum(axis=1).tolist()) == {4.0}
    assert data.propensities.shape == (290, 300)
    assert 0.0025 < data.propensities.min() < 0.0026 and 0.68 < data.propensities.max() < 0.70
    assert data.user_feature_names[0] == "gender:men" and len(data.item_feature_names) == 33


def test_lastfm_play_counts(shared_data):
    data = datasets.load("lastfm-2k", data_dir=shared_data, download=False)
    assert len(data) == 92_834 and data.shape == (1_892, 17_632)
    assert data.user_ids.min() == 2 and data.user_ids.max() == 2100
    assert data.values.min() == 1 and data.values.max() == 352_698
    names = datasets.load_item_names("lastfm-2k", data_dir=shared_data)
    assert len(names) == 17_632 and names[1] == "MALICE MIZER"


def test_video_keeps_file_order_so_sequences_are_recoverable(shared_data):
    data = datasets.load("video", data_dir=shared_data, download=False)
    assert len(data) == 287_107 and data.shape == (31_013, 23_715)
    assert np.array_equal(data.timestamps, np.arange(len(data)))  # the file position is the clock
    raw = np.loadtxt(shared_data / "sasrec-video" / "Video.txt", dtype=np.int64)
    assert np.array_equal(data.user_ids[data.users], raw[:, 0]) and np.array_equal(data.item_ids[data.items], raw[:, 1])
    sequences = data.sequences(by="row")
    # the file is grouped by user (ascending), so the sequences in user order are its item column
    assert np.array_equal(data.item_ids[np.concatenate(sequences)], raw[:, 1])
    assert data.item_ids[sequences[0]].tolist() == raw[raw[:, 0] == 1, 1].tolist()
    lengths = np.array([len(s) for s in sequences])
    assert (lengths == 1).sum() == 30 and (lengths == 4).sum() == 1_288
    _, _, test = split.leave_one_out(data, by="row")
    assert len(test) == int((lengths >= 3).sum())
    # the default (by time) works as written and is the file order
    _, _, test_by_time = split.leave_one_out(data)
    assert np.array_equal(test_by_time.users, test.users) and np.array_equal(test_by_time.items, test.items)


def test_beauty_sequences_in_line_order(shared_data):
    data = datasets.load("beauty", data_dir=shared_data, download=False)
    assert len(data) == 198_502 and data.shape == (22_363, 12_101)
    assert np.array_equal(data.timestamps, np.arange(len(data)))
    sequences = data.sequences(by="row")
    assert all(np.array_equal(a, b) for a, b in zip(sequences, data.sequences()))
    train, valid, test = split.leave_one_out(data)  # as written: last item test, second-last valid
    test_item = dict(zip(test.users.tolist(), test.items.tolist()))
    valid_item = dict(zip(valid.users.tolist(), valid.items.tolist()))
    assert len(test_item) == len(sequences)  # every Beauty user has >= 5 items
    assert all(test_item[u] == s[-1] and valid_item[u] == s[-2] for u, s in enumerate(sequences))
    assert min(len(s) for s in sequences) >= 5
    with open(shared_data / "s3rec-beauty" / "Beauty.txt") as fh:
        first, second = (list(map(int, fh.readline().split())) for _ in range(2))
    assert data.item_ids[sequences[data.user_map.to_internal(first[0])]].tolist() == first[1:]
    assert data.item_ids[sequences[data.user_map.to_internal(second[0])]].tolist() == second[1:]


def test_modcloth_parts_share_one_id_space(shared_data):
    data = datasets.load("modcloth-deca", data_dir=shared_data, download=False)
    assert isinstance(data, datasets.ModClothData)
    parts = (data.train, data.valid, data.test_noisy, data.test_clean)
    assert [len(p) for p in parts] == [79_914, 9_990, 9_989, 5_433]
    assert all(p.user_map is data.train.user_map and p.item_map is data.train.item_map for p in parts)
    assert data.train.shape == (44_784, 1_020)
    assert np.bincount(data.train.values.astype(int))[1:].tolist() == [2_768, 4_662, 9_113, 19_681, 43_690]
    assert set(data.test_clean.values.tolist()) == {5.0}
    noisy5 = data.test_noisy.subset(data.test_noisy.values == 5)
    assert (data.test_clean.matrix != noisy5.matrix).nnz == 0  # clean test = the rating-5 noisy test


# ----------------------------------------------------------------------------- malformed files
U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"


def _ml100k(tmp_path, text):
    folder = tmp_path / "ml-100k"
    folder.mkdir(exist_ok=True)
    (folder / "u.data").write_text(text)
    return tmp_path


def test_small_u_data_loads_with_external_ids(tmp_path):
    data = datasets.load("ml-100k", data_dir=_ml100k(tmp_path, U_DATA), download=False)
    assert data.user_ids.tolist() == [22, 186, 196] and data.values.tolist() == [3, 3, 1]


def test_truncated_file_names_file_and_line(tmp_path):
    root = _ml100k(tmp_path, U_DATA + "244\t51\t2")  # the last line lost its timestamp
    with pytest.raises(DataError, match=r"u\.data: line 4 has 3 field\(s\), expected 4 \(user_id, item_id, rating, "
                                        r"timestamp\); is the file truncated"):
        datasets.load("ml-100k", data_dir=root, download=False)


def test_non_numeric_id_names_line_and_field(tmp_path):
    root = _ml100k(tmp_path, U_DATA.replace("186\t302", "186\tabc"))
    with pytest.raises(DataError, match=r"u\.data: line 2 has the field 'abc', which is not an integer"):
        datasets.load("ml-100k", data_dir=root, download=False)


def test_decimal_where_an_integer_is_expected(tmp_path):
    root = _ml100k(tmp_path, U_DATA.replace("\t1\t", "\t1.5\t"))
    with pytest.raises(DataError, match=r"line 3 has the field '1\.5'"):
        datasets.load("ml-100k", data_dir=root, download=False)


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"u\.data: no data \(the file is empty\)"):
        datasets.load("ml-100k", data_dir=_ml100k(tmp_path, "\n"), download=False)


def test_blank_lines_are_skipped_and_line_numbers_stay_true(tmp_path):
    root = _ml100k(tmp_path, "\n" + U_DATA + "\n\n1\t2\n")
    with pytest.raises(DataError, match="line 7 has 2 field"):
        datasets.load("ml-100k", data_dir=root, download=False)


def test_full_ml_1m_ratings_dat_has_ratings_and_timestamps(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n2::1357::5::978298709\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the complete file must not warn
        data = datasets.load("ml-1m", data_dir=tmp_path, download=False)
    assert data.values.tolist() == [5, 3, 5] and data.timestamps.tolist() == [978300760, 978302109, 978298709]
    (folder / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3\n")
    with pytest.raises(DataError, match=r"ratings\.dat: line 2 has 3 field"):
        datasets.load("ml-1m", data_dir=tmp_path, download=False)


def test_corrupted_gzip_is_a_data_error(tmp_path):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    blob = gzip.compress(b"1\t1193\n" * 1000)
    (folder / "ratings_user_item_pairs.tsv.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="could not be read"):
        datasets.load("ml-1m", data_dir=tmp_path, download=False)


def test_beauty_line_without_items(tmp_path):
    path = tmp_path / "Beauty.txt"
    path.write_text("1 1 2 3\n2 4 5\n3\n")
    with pytest.raises(DataError, match=r"Beauty\.txt: line 3 has a user id but no items"):
        sequential.read_user_sequences(path)
    path.write_text("1 1 2 3\n2 4 5\n")
    data = sequential.read_user_sequences(path)
    assert data.user_ids[data.users].tolist() == [1, 1, 1, 2, 2] and data.item_ids[data.items].tolist() == [1, 2, 3, 4, 5]


def test_lastfm_header_only_file(tmp_path):
    folder = tmp_path / "lastfm-hetrec2011"
    folder.mkdir()
    (folder / "user_artists.dat").write_bytes(b"userID\tartistID\tweight\r\n")
    with pytest.raises(DataError, match="empty after its header"):
        datasets.load("lastfm-2k", data_dir=tmp_path, download=False)


def _coat_folder(tmp_path, shared):
    folder = tmp_path / "coat"
    shutil.copytree(shared / "coat", folder)
    return folder


def test_coat_truncated_matrix(tmp_path, shared_data):
    folder = _coat_folder(tmp_path, shared_data)
    lines = (folder / "train.ascii").read_bytes().splitlines(keepends=True)
    (folder / "train.ascii").write_bytes(b"".join(lines[:-1]))
    with pytest.raises(DataError, match=r"train\.ascii: 289 rows, expected 290"):
        coat.load_coat(folder)
    (folder / "train.ascii").write_bytes(b"".join(lines[:-1]) + lines[-1][:100])
    with pytest.raises(DataError, match=r"train\.ascii: line 290 has 50 field\(s\), expected 300"):
        coat.load_coat(folder)


def test_coat_out_of_range_rating(tmp_path, shared_data):
    folder = _coat_folder(tmp_path, shared_data)
    lines = (folder / "test.ascii").read_bytes().splitlines(keepends=True)
    lines[2] = b"7" + lines[2][1:]
    (folder / "test.ascii").write_bytes(b"".join(lines))
    with pytest.raises(DataError, match=r"test\.ascii: line 3, column 1 holds 7; expected ratings 0-5"):
        coat.load_coat(folder)


def test_modcloth_truncated_part(tmp_path):
    folder = tmp_path / "modcloth-deca"
    folder.mkdir()
    for name in modcloth.FILES.values():
        (folder / name).write_bytes(b"0\t1\t5\r\n1\t2\t3\r\n")
    (folder / "modcloth.valid.rating").write_bytes(b"0\t1\t5\r\n1\t2")
    with pytest.raises(DataError, match=r"modcloth\.valid\.rating: line 2 has 2 field"):
        datasets.load("modcloth-deca", data_dir=tmp_path, download=False)
