"""``Interactions``: a log of (user, item[, value][, timestamp]) events with id maps both ways."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recfb.data.idmap import IdMap
from recfb.utils.errors import DataError

DUPLICATE_POLICIES = ("sum", "max", "last")


class Interactions:
    """Implicit-feedback events in internal id space, with external<->internal id maps.

    Rows keep their input order (``order`` of a file matters for sequence data); the
    users x items ``matrix`` is built on demand with a stated duplicate policy.

    Parameters
    ----------
    users, items : array-like of int
        Internal ids (0..n_users-1, 0..n_items-1). Use :meth:`from_arrays` for external ids.
    values : array-like of float, optional
        Weights (ratings, play counts). Default: 1 for every row.
    timestamps : array-like of number, optional
        Event times; needed by temporal splits and :meth:`sequences`.
    user_map, item_map : IdMap
        External ids; ``user_map.ids[u]`` is the external id of internal user ``u``.
    duplicates : {"sum", "max", "last"}, default "sum"
        How repeated (user, item) rows combine in :attr:`matrix`; "last" is by timestamp
        when there are timestamps, else by row order.
    """

    def __init__(self, users, items, values=None, timestamps=None, *, user_map: IdMap,
                 item_map: IdMap, duplicates: str = "sum", validate: bool = True):
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates == {duplicates!r}, must be one of {DUPLICATE_POLICIES}.")
        if validate:
            if users.size != items.size:
                raise DataError(f"users has {users.size} rows but items has {items.size}; lengths must match.")
            if users.size and (users.min() < 0 or users.max() >= len(user_map)):
                raise DataError(f"internal user ids must lie in 0..{len(user_map) - 1}, got {users.min()}..{users.max()}.")
            if items.size and (items.min() < 0 or items.max() >= len(item_map)):
                raise DataError(f"internal item ids must lie in 0..{len(item_map) - 1}, got {items.min()}..{items.max()}.")
        self.users = users
        self.items = items
        self.values = None if values is None else _check_values(values, users.size)
        self.timestamps = None if timestamps is None else _check_timestamps(timestamps, users.size)
        self.user_map = user_map
        self.item_map = item_map
        self.duplicates = duplicates
        self._matrix = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(cls, users, items, values=None, timestamps=None, *, user_ids=None, item_ids=None,
                    duplicates: str = "sum") -> "Interactions":
        """Build from external ids. ``user_ids``/``item_ids`` fix the id space (e.g. to share it
        between a train and a test file); otherwise it is the sorted distinct ids seen."""
        users_arr = np.asarray(users)
        items_arr = np.asarray(items)
        if users_arr.ndim != 1 or items_arr.ndim != 1:
            raise DataError(f"users and items must be 1-D, got shapes {users_arr.shape} and {items_arr.shape}.")
        if users_arr.size != items_arr.size:
            raise DataError(f"users has {users_arr.size} rows but items has {items_arr.size}; lengths must match.")
        if users_arr.size == 0:
            raise DataError("no interactions: users and items are empty.")
        for arr, name in ((values, "values"), (timestamps, "timestamps")):
            if arr is not None and np.asarray(arr).reshape(-1).size != users_arr.size:
                raise DataError(f"{name} has {np.asarray(arr).size} rows but users has {users_arr.size}; lengths must match.")
        if values is not None:  # a zero is not an interaction: never kept as a stored zero
            values = _check_values(values, users_arr.size)
            zero = values == 0
            if zero.all():
                raise DataError(f"all {zero.size} rows have value 0; a zero is not an interaction, so there are none.")
            if zero.any():
                warnings.warn(f"dropped {int(zero.sum())} of {zero.size} rows with value 0 (a zero is not an "
                              "interaction).", stacklevel=2)
                keep = ~zero
                users_arr, items_arr, values = users_arr[keep], items_arr[keep], values[keep]
                if timestamps is not None:
                    timestamps = np.asarray(timestamps).reshape(-1)[keep]
        if user_ids is None:
            user_map, u = IdMap.from_values(users_arr, "user ids")
        else:
            user_map = user_ids if isinstance(user_ids, IdMap) else IdMap(user_ids, "user ids")
            u = user_map.to_internal(users_arr)
        if item_ids is None:
            item_map, i = IdMap.from_values(items_arr, "item ids")
        else:
            item_map = item_ids if isinstance(item_ids, IdMap) else IdMap(item_ids, "item ids")
            i = item_map.to_internal(items_arr)
        return cls(u, i, values, timestamps, user_map=user_map, item_map=item_map,
                   duplicates=duplicates, validate=False)

    @classmethod
    def from_matrix(cls, X, *, user_ids=None, item_ids=None) -> "Interactions":
        """Build from a users x items sparse matrix (values = its entries)."""
        X = sp.coo_matrix(X)
        user_map = IdMap(np.arange(X.shape[0]) if user_ids is None else user_ids, "user ids")
        item_map = IdMap(np.arange(X.shape[1]) if item_ids is None else item_ids, "item ids")
        order = np.lexsort((X.col, X.row))
        return cls(X.row[order], X.col[order], X.data[order], user_map=user_map, item_map=item_map)

    @classmethod
    def from_dataframe(cls, df, user_col: str = "user", item_col: str = "item", value_col: str | None = None,
                       timestamp_col: str | None = None, **kwargs) -> "Interactions":
        """Build from a pandas or polars DataFrame (columns named by the arguments)."""
        columns = list(df.columns)
        for col in (user_col, item_col, value_col, timestamp_col):
            if col is not None and col not in columns:
                raise DataError(f"column {col!r} not in the DataFrame; it has {columns}.")

        def col(name):
            if name is None:
                return None
            series = df[name]
            if hasattr(series, "isna") and bool(series.isna().any()):
                raise DataError(f"column {name!r} has {int(series.isna().sum())} missing values.")
            if hasattr(series, "null_count") and series.null_count():
                raise DataError(f"column {name!r} has {series.null_count()} missing values.")
            if timestamp_col == name and str(series.dtype).startswith(("datetime", "Datetime")):
                return _datetime_to_seconds(series)
            return series.to_numpy()

        return cls.from_arrays(col(user_col), col(item_col), col(value_col), col(timestamp_col), **kwargs)

    @classmethod
    def from_csv(cls, path, sep: str | None = None, columns=("user", "item", "value", "timestamp"),
                 header="auto", encoding: str = "utf-8", **kwargs) -> "Interactions":
        """Read a delimited text file (CSV, TSV, ``::``- or whitespace-separated; ``.gz`` allowed)
        with pyarrow's CSV parser (quoted fields, a byte-order mark and ``\r\n`` are handled).

        Parameters
        ----------
        columns : sequence of str or None
            The file's columns in order, by role: ``"user"``, ``"item"``, ``"value"``,
            ``"timestamp"``; ``None`` for a column to skip.
        sep : str, optional
            Separator; guessed from the extension (``.tsv`` tab, ``.csv`` comma), else runs of
            whitespace.
        header : {"auto", True, False}, default "auto"
            Whether the first line is a header. ``"auto"`` decides (a first line that names a
            role, or holds text where the column below is numeric, is a header) and says in a
            warning what it decided. A header's names are checked against ``columns``: a
            header that names a role in another position (columns swapped) is an error naming
            both; names that are no role (``userId,movieId``) are read by position, with a
            warning.
        encoding : str, default "utf-8"
            Decoding is strict: an undecodable byte is an error naming its line and offset.

        Anything malformed (a line with another number of fields, an unterminated quote, a
        non-numeric value or timestamp, a last line that ends without a newline and looks cut
        inside a field) raises DataError naming the line.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        if header is None:
            header = "auto"
        if header not in ("auto", True, False):
            raise ValueError(f"header == {header!r}, must be 'auto', True or False.")
        columns = list(columns)
        roles = [c for c in columns if c is not None]
        unknown = [c for c in roles if c not in _ROLES]
        if unknown or len(set(roles)) != len(roles) or not {"user", "item"} <= set(roles):
            raise DataError(f"columns must name a 'user' and an 'item' column (and optionally 'value', "
                            f"'timestamp'; None to skip a column), each once; got {tuple(columns)}.")
        text = _read_text(path, encoding)
        if not text.strip():
            raise DataError(f"{path} is empty; expected rows of {', '.join(roles)}.")
        if sep is None:
            name = path.name.lower().removesuffix(".gz")
            sep = "\t" if name.endswith(".tsv") else "," if name.endswith(".csv") else None
        table, lines = _parse_delimited(text, sep, len(columns), str(path))
        first = [str(table.column(j)[0]) for j in range(table.num_columns)]
        if header == "auto":
            header = _looks_like_header(first, columns, table)
            warnings.warn(f"{path}: header='auto' read the first line ({','.join(first)[:80]!r}) as "
                          f"{'a header' if header else 'data'}; pass header=True or header=False to choose.",
                          stacklevel=2)
        if header:
            _check_header(first, columns, str(path))
            table, lines = table.slice(1), lines[1:]
        if table.num_rows == 0:
            raise DataError(f"{path} has a header but no rows.")
        if not text.endswith(("\n", "\r")):
            _check_last_line(table, columns, lines, str(path))
        data = {}
        for j, role in enumerate(columns):
            if role is not None:
                data[role] = _convert_column(table.column(j), role, lines, str(path))
        return cls.from_arrays(data["user"], data["item"], data.get("value"), data.get("timestamp"), **kwargs)

    @classmethod
    def from_parquet(cls, path, user_col: str = "user", item_col: str = "item", value_col: str | None = None,
                     timestamp_col: str | None = None, *, rank: int | None = None, world_size: int | None = None,
                     id_maps: str = "auto", **kwargs) -> "Interactions":
        """Read a Parquet file or a directory of them (needs pyarrow); the column names are arguments.

        A directory is read as the ``*.parquet`` files under it (recursively) in sorted path
        order, their rows concatenated. With ``rank`` and ``world_size``, only this rank's
        share is read: the row groups of all files, in that order, are cut into
        ``world_size`` contiguous runs of about equal row counts (from the files' metadata,
        before any data is read), and rank ``r`` reads run ``r``. The ranks' rows, in rank
        order, are the rows of the whole dataset; write at least ``world_size`` row groups.

        The id maps are built once, from the ids of all ranks, so every rank gets the same
        internal ids as one process reading everything (sorted distinct ids):
        ``id_maps="gather"`` has each rank find its shard's distinct ids and all-gather them
        over the initialised torch.distributed group (the traffic is distinct ids, not rows);
        ``"scan"`` has each rank read the two id columns of every file (a column-only first
        pass: no process group needed, e.g. from Spark tasks, at the cost of every rank
        reading all ids); ``"auto"`` gathers when a process group of ``world_size`` ranks is
        initialised, else scans. ``user_ids``/``item_ids`` (passed on to :meth:`from_arrays`)
        skip both.
        """
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("reading Parquet needs pyarrow: pip install pyarrow") from exc
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no such file or directory: {path}")
        if (rank is None) != (world_size is None):
            raise ValueError(f"rank == {rank!r} and world_size == {world_size!r}: give both or neither.")
        sharded = rank is not None
        if sharded:
            for name, v in (("rank", rank), ("world_size", world_size)):
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                    raise TypeError(f"{name} must be an int, got {v!r} ({type(v).__name__}).")
            if world_size < 1 or not 0 <= rank < world_size:
                raise ValueError(f"rank == {rank}, world_size == {world_size}: need world_size >= 1 and "
                                 "0 <= rank < world_size.")
        if id_maps not in ("auto", "gather", "scan"):
            raise ValueError(f"id_maps == {id_maps!r}, must be 'auto', 'gather' or 'scan'.")
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file()) if path.is_dir() else [path]
        if not files:
            raise DataError(f"{path} is a directory with no *.parquet file.")
        handles = []
        for f in files:
            try:
                handles.append(pq.ParquetFile(f))
            except Exception as exc:
                raise DataError(f"{f} is not a readable Parquet file: {exc}") from None
        if not sharded and len(files) == 1:
            table = _read_parquet_units(handles, [(0, g) for g in range(handles[0].num_row_groups)], None, files)
            return cls.from_dataframe(table.to_pandas(), user_col, item_col, value_col, timestamp_col, **kwargs)
        units = [(j, g) for j, h in enumerate(handles) for g in range(h.num_row_groups)]
        rows = np.array([handles[j].metadata.row_group(g).num_rows for j, g in units], np.int64)
        rank, world_size = (0, 1) if not sharded else (int(rank), int(world_size))
        owner = _contiguous_owners(rows, world_size)
        empty = sorted(set(range(world_size)) - set(owner[rows > 0].tolist()))
        if empty:
            raise DataError(f"{path}: {len(units)} row group(s) ({int(rows.sum())} rows) cannot give each of "
                            f"world_size={world_size} ranks rows (ranks {empty} would get none); write the data "
                            "in at least world_size row groups or files.")
        mine = [u for u, o in zip(units, owner) if o == rank]
        if world_size > 1 and "user_ids" not in kwargs and "item_ids" not in kwargs:
            mode = id_maps
            if mode == "auto":
                mode = "gather" if _group_world_size() == world_size else "scan"
            id_cols = [user_col, item_col]
            if mode == "scan":
                ids = _read_parquet_units(handles, units, id_cols, files)
            else:
                ids = _read_parquet_units(handles, mine, id_cols, files)
            _check_no_nulls(ids, id_cols, path)
            user_map, _ = IdMap.from_values(ids.column(user_col).to_numpy(zero_copy_only=False), "user ids")
            item_map, _ = IdMap.from_values(ids.column(item_col).to_numpy(zero_copy_only=False), "item ids")
            del ids
            if mode == "gather":
                user_map, item_map = _gather_id_maps(user_map, item_map, world_size)
            kwargs = {**kwargs, "user_ids": user_map, "item_ids": item_map}
        columns = [c for c in (user_col, item_col, value_col, timestamp_col) if c is not None]
        table = _read_parquet_units(handles, mine, columns, files)
        return cls.from_dataframe(table.to_pandas(), user_col, item_col, value_col, timestamp_col, **kwargs)

    # ------------------------------------------------------------------ basic properties
    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    @property
    def shape(self) -> tuple[int, int]:
        return self.n_users, self.n_items

    @property
    def user_ids(self) -> np.ndarray:
        """External user ids; the index is the internal id."""
        return self.user_map.ids

    @property
    def item_ids(self) -> np.ndarray:
        return self.item_map.ids

    def __len__(self) -> int:
        return int(self.users.size)

    def __repr__(self) -> str:
        extras = [n for n, a in (("values", self.values), ("timestamps", self.timestamps)) if a is not None]
        return (f"Interactions({len(self):,} rows, {self.n_users:,} users x {self.n_items:,} items"
                f"{', with ' + ' and '.join(extras) if extras else ''})")

    # ------------------------------------------------------------------ matrix
    @property
    def matrix(self) -> sp.csr_matrix:
        """Users x items CSR float32 with sorted indices; duplicates combined by ``duplicates``."""
        if self._matrix is None:
            self._matrix = self.to_csr(self.duplicates)
        return self._matrix

    def to_csr(self, duplicates: str | None = None) -> sp.csr_matrix:
        duplicates = duplicates or self.duplicates
        if duplicates not in DUPLICATE_POLICIES:
            raise ValueError(f"duplicates == {duplicates!r}, must be one of {DUPLICATE_POLICIES}.")
        values = np.ones(len(self), np.float32) if self.values is None else self.values.astype(np.float32)
        key = self.users * self.n_items + self.items
        if duplicates == "sum":
            X = sp.csr_matrix((values, (self.users, self.items)), shape=self.shape, dtype=np.float32)
            X.sum_duplicates()
            return X
        if duplicates == "last":
            rank = np.arange(len(self)) if self.timestamps is None else np.lexsort((np.arange(len(self)), self.timestamps))
            order = rank[np.lexsort((np.arange(len(self)), key[rank]))]  # by key, then time
            k = key[order]
            last = np.r_[k[1:] != k[:-1], True]
            sel = order[last]
        else:  # max
            order = np.lexsort((values, key))
            k = key[order]
            sel = order[np.r_[k[1:] != k[:-1], True]]
        sel = sel[np.argsort(key[sel], kind="stable")]
        X = sp.csr_matrix((values[sel], (self.users[sel], self.items[sel])), shape=self.shape, dtype=np.float32)
        X.sort_indices()
        return X

    # ------------------------------------------------------------------ transformations
    def subset(self, mask_or_index) -> "Interactions":
        """Rows selected by a boolean mask or an index array, in the same id space."""
        sel = np.asarray(mask_or_index)
        return Interactions(self.users[sel], self.items[sel],
                            None if self.values is None else self.values[sel],
                            None if self.timestamps is None else self.timestamps[sel],
                            user_map=self.user_map, item_map=self.item_map,
                            duplicates=self.duplicates, validate=False)

    def binarize(self, threshold: float) -> "Interactions":
        """Keep rows with value >= ``threshold`` and set their value to 1 (same id space)."""
        if self.values is None:
            raise DataError("binarize needs values (ratings or counts); these interactions have none.")
        keep = self.values >= threshold
        if not keep.any():
            raise DataError(f"no interaction has a value >= {threshold} (max value {self.values.max()}).")
        out = self.subset(keep)
        out.values = np.ones(int(keep.sum()), np.float32)
        return out

    def k_core(self, user_k: int = 5, item_k: int | None = None) -> "Interactions":
        """Repeatedly drop users with fewer than ``user_k`` distinct items and items with fewer
        than ``item_k`` distinct users until both hold; ids are re-indexed compactly."""
        item_k = user_k if item_k is None else item_k
        keep = np.ones(len(self), bool)
        X = self.to_csr("max")
        while True:
            X.data[:] = 1
            ucount = np.asarray(X.sum(axis=1)).ravel()
            icount = np.asarray(X.sum(axis=0)).ravel()
            bad_u, bad_i = ucount < user_k, icount < item_k
            bad_u &= ucount > 0
            bad_i &= icount > 0
            if not bad_u.any() and not bad_i.any():
                break
            X = sp.diags((~bad_u).astype(np.float32)) @ X @ sp.diags((~bad_i).astype(np.float32))
            X.eliminate_zeros()
            X = X.tocsr()
        ucount = np.asarray(X.sum(axis=1)).ravel()
        icount = np.asarray(X.sum(axis=0)).ravel()
        keep &= (ucount[self.users] > 0) & (icount[self.items] > 0)
        if not keep.any():
            raise DataError(f"the {user_k}-core (users) / {item_k}-core (items) is empty.")
        return self.subset(keep).compact()

    def compact(self) -> "Interactions":
        """Drop users and items with no rows and re-index ids 0..n-1 (external ids kept)."""
        u_uniq, u = np.unique(self.users, return_inverse=True)
        i_uniq, i = np.unique(self.items, return_inverse=True)
        return Interactions(u.reshape(-1), i.reshape(-1), self.values, self.timestamps,
                            user_map=IdMap(self.user_ids[u_uniq], "user ids"),
                            item_map=IdMap(self.item_ids[i_uniq], "item ids"),
                            duplicates=self.duplicates, validate=False)

    def order(self, by: str = "timestamp") -> np.ndarray:
        """Row order grouped by user, then by time (``by="timestamp"``) or file order (``"row"``).
        Ties in time keep the file order."""
        rows = np.arange(len(self))
        if by == "timestamp":
            if self.timestamps is None:
                raise DataError("these interactions have no timestamps; pass by='row' to use the file order, "
                                "or load the data with a timestamp column.")
            return np.lexsort((rows, self.timestamps, self.users))
        if by == "row":
            return np.lexsort((rows, self.users))
        raise ValueError(f"by == {by!r}, must be 'timestamp' or 'row'.")

    def sequences(self, by: str = "timestamp") -> list[np.ndarray]:
        """Per internal user, the internal item ids ordered by time (or file order)."""
        order = self.order(by)
        counts = np.bincount(self.users, minlength=self.n_users)
        return np.split(self.items[order], np.cumsum(counts)[:-1])

    def with_id_space(self, user_map: IdMap, item_map: IdMap) -> "Interactions":
        """Re-express these rows in another id space (every id must exist there)."""
        u = user_map.to_internal(self.user_ids[self.users])
        i = item_map.to_internal(self.item_ids[self.items])
        return Interactions(u, i, self.values, self.timestamps, user_map=user_map, item_map=item_map,
                            duplicates=self.duplicates, validate=False)


def _contiguous_owners(rows: np.ndarray, world_size: int) -> np.ndarray:
    """Rank of each row group: contiguous runs of about ``total / world_size`` rows."""
    total = int(rows.sum())
    starts = np.cumsum(rows) - rows
    return np.minimum(world_size - 1, (starts * world_size) // max(total, 1)).astype(np.int64)


def _read_parquet_units(handles, units, columns, files):
    """The rows of ``units`` ((file, row group) pairs), as one pyarrow table."""
    import pyarrow as pa

    parts = []
    for j, group in units:
        try:
            parts.append(handles[j].read_row_group(group, columns=columns))
        except Exception as exc:
            raise DataError(f"{files[j]} row group {group}: cannot read columns {columns}: {exc}") from None
    if not parts:
        return handles[0].schema_arrow.empty_table() if columns is None else \
            handles[0].schema_arrow.empty_table().select(columns)
    try:
        return pa.concat_tables(parts)
    except Exception as exc:
        raise DataError(f"the Parquet files do not share one schema: {exc}") from None


def _check_no_nulls(table, columns, source) -> None:
    for c in columns:
        if c not in table.column_names:
            raise DataError(f"column {c!r} not in {source}; it has {table.column_names}.")
        nulls = table.column(c).null_count
        if nulls:
            raise DataError(f"column {c!r} has {nulls} missing values.")


def _group_world_size() -> int | None:
    """World size of the initialised torch.distributed group, None when there is none."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return None
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else None


def _gather_id_maps(user_map: IdMap, item_map: IdMap, world_size: int):
    """Every rank's distinct ids, all-gathered and merged: the same sorted maps on each rank."""
    from recfb.distributed import get_comm

    comm = get_comm(None)
    if comm.world_size != world_size:
        raise DataError(f"id_maps='gather' needs an initialised process group of world_size={world_size} ranks; "
                        f"found world size {comm.world_size}. Use id_maps='scan'.")
    users, items = zip(*comm.all_gather_object((user_map.ids, item_map.ids)))
    return (IdMap.from_values(np.concatenate(users), "user ids")[0],
            IdMap.from_values(np.concatenate(items), "item ids")[0])


def concatenate(parts) -> Interactions:
    """Rows of several Interactions that share one id space, in the given order."""
    parts = list(parts)
    first = parts[0]
    for p in parts[1:]:
        if not (p.user_map is first.user_map or p.user_map == first.user_map) or not (
                p.item_map is first.item_map or p.item_map == first.item_map):
            raise DataError("concatenate needs Interactions in the same id space.")
    def cat(attr):
        arrs = [getattr(p, attr) for p in parts]
        return None if any(a is None for a in arrs) else np.concatenate(arrs)
    return Interactions(cat("users"), cat("items"), cat("values"), cat("timestamps"), user_map=first.user_map,
                        item_map=first.item_map, duplicates=first.duplicates, validate=False)


def _check_values(values, n: int) -> np.ndarray:
    v = np.asarray(values)
    if v.dtype.kind not in "biuf":
        raise DataError(f"values must be numeric, got dtype {v.dtype}.")
    v = v.astype(np.float32).reshape(-1)
    if v.size != n:
        raise DataError(f"values has {v.size} rows but users has {n}; lengths must match.")
    bad = ~np.isfinite(v)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"values contains {v[row]} at row {row}; weights must be finite (no NaN or inf).")
    if v.size and v.min() < 0:
        row = int(np.argmin(v))
        raise DataError(f"values contains a negative weight ({v[row]}) at row {row}; weights must be >= 0.")
    return v


def _check_timestamps(ts, n: int) -> np.ndarray:
    t = np.asarray(ts)
    if t.dtype.kind == "M":
        nat = np.isnat(t).reshape(-1)
        if nat.any():
            row = int(np.argmax(nat))
            raise DataError(f"timestamps contains NaT (not a time) at row {row}; every event needs a time.")
        t = t.astype("datetime64[s]").astype(np.int64)
    if t.dtype.kind not in "iuf":
        raise DataError(f"timestamps must be numeric or datetime64, got dtype {t.dtype}.")
    t = t.reshape(-1)
    if t.size != n:
        raise DataError(f"timestamps has {t.size} rows but users has {n}; lengths must match.")
    if t.dtype.kind == "f":
        bad = ~np.isfinite(t)
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"timestamps contains {t[row]} at row {row}; timestamps must be finite.")
    return t


def _datetime_to_seconds(series) -> np.ndarray:
    arr = np.asarray(series.to_numpy())
    nat = np.isnat(arr) if arr.dtype.kind == "M" else np.zeros(arr.shape, bool)
    if nat.any():
        raise DataError(f"timestamps contains NaT (not a time) at row {int(np.argmax(nat))}; every event needs a time.")
    return arr.astype("datetime64[s]").astype(np.int64)


_ROLES = ("user", "item", "value", "timestamp")
_INT_RE = r"^(0|-?[1-9][0-9]*)$"  # canonical integers: '007' stays a string id, distinct from '7'


def _read_text(path: Path, encoding: str) -> str:
    """The file's text: gunzipped (errors name the file), strictly decoded (errors name the
    line and byte offset), without a byte-order mark."""
    import codecs
    import gzip
    import zlib

    raw = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path} is not a readable gzip file ({exc}); is it truncated or not gzipped?") from None
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"encoding == {encoding!r} is not a known codec.") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} (byte offset {exc.start}) holds bytes {raw[exc.start:exc.end]!r} that "
                        f"are not valid {encoding}; pass encoding= the file's encoding (e.g. 'latin-1').") from None
    return text.removeprefix("\ufeff")


def _parse_delimited(text: str, sep, n_columns: int, source: str):
    """Parse with pyarrow.csv into string columns; returns (table, physical line number of
    each row). Whitespace and multi-character separators become a tab first."""
    import re

    import pyarrow as pa
    import pyarrow.csv as pacsv

    if sep is None or sep == " ":
        plain_tabs = " " not in text and "\t\t" not in text and "\n\t" not in text and "\t\n" not in text
        if not plain_tabs or text.startswith("\t"):  # runs of blanks -> one tab (skipped when already so)
            text = re.sub(r"[ \t]+", "\t", re.sub(r"(?m)^[ \t]+|[ \t]+$", "", text))
        sep = "\t"
    elif len(sep) > 1:
        text = text.replace(sep, "\x1f")
        sep = "\x1f"
    bad = []

    def invalid(row):
        bad.append(row)
        return "skip"

    names = [f"c{j}" for j in range(max(n_columns, 1))]
    try:
        table = pacsv.read_csv(
            pa.py_buffer(raw := text.encode("utf-8")),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=sep, invalid_row_handler=invalid),
            convert_options=pacsv.ConvertOptions(column_types={f"f{j}": pa.string() for j in range(64)},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        hint = " (an unterminated quote?)" if '"' in msg else ""
        raise DataError(f"{source}: not a readable delimited file{hint}: {msg}") from None
    physical = _nonblank_line_numbers(raw)
    if bad:
        row = bad[0]
        line = physical[row.number - 1] if row.number is not None and row.number - 1 < len(physical) else "?"
        raise DataError(f"{source}: line {line} has {row.actual_columns} fields, expected {row.expected_columns} "
                        f"like the first line ({row.text[:60]!r}); is the file truncated or the separator wrong?")
    if table.num_columns < n_columns:
        raise DataError(f"{source}: line {physical[0]} has {table.num_columns} fields, expected at least {n_columns} "
                        f"(columns={tuple(names)}); is the file truncated or the separator wrong?")
    table = table.rename_columns([f"c{j}" for j in range(table.num_columns)])
    return table, physical[:table.num_rows]


def _nonblank_line_numbers(raw: bytes) -> np.ndarray:
    """1-based physical line numbers of the lines pyarrow keeps (it skips empty lines), from
    the newline positions of the bytes (vectorised; ``\r\n`` and lone ``\r`` end lines too)."""
    buf = np.frombuffer(raw, np.uint8)
    cr_lf = np.flatnonzero((buf[:-1] == 13) & (buf[1:] == 10)) if buf.size > 1 else np.empty(0, np.int64)
    ends = np.flatnonzero((buf == 10) | (buf == 13))
    ends = np.setdiff1d(ends, cr_lf, assume_unique=True)  # "\r\n" ends once, at its "\n"
    starts = np.concatenate([[0], ends + 1])
    stops = np.concatenate([ends, [buf.size]])
    stops = np.where(np.isin(stops - 1, cr_lf), stops - 1, stops)  # drop the "\r" of "\r\n"
    keep = stops > starts
    return np.flatnonzero(keep) + 1


def _looks_like_header(first, columns, table) -> bool:
    """A first line is a header when a field names a role, or holds text above a column that
    is numeric everywhere else."""
    import pyarrow.compute as pac

    if any(f.strip().lower() in _ROLES for f in first):
        return True
    if table.num_rows < 2:
        return False
    for j in range(min(len(columns), table.num_columns)):
        rest = pac.utf8_trim_whitespace(table.column(j).slice(1))
        head = first[j].strip()
        if _is_number(head):
            continue
        try:
            pac.cast(rest, "float64")
        except Exception:  # the column below is not numeric either: no evidence
            continue
        return True
    return False


def _check_header(first, columns, source: str) -> None:
    names = [f.strip().lower() for f in first]
    swapped = [(j, n) for j, n in enumerate(names)
               if n in _ROLES and j < len(columns) and columns[j] != n and n in columns]
    if swapped:
        j, n = swapped[0]
        raise DataError(f"{source}: the header names column {j + 1} {first[j].strip()!r} but columns= puts "
                        f"{columns[j]!r} there (header {tuple(f.strip() for f in first)}, columns "
                        f"{tuple(columns)}); are the columns swapped? Pass columns= in the file's order.")
    if not all(n == c for n, c in zip(names, columns) if c is not None):
        warnings.warn(f"{source}: header {tuple(f.strip() for f in first)} is read by position as "
                      f"{tuple(columns)}.", stacklevel=3)


def _check_last_line(table, columns, lines, source: str) -> None:
    """A file that ends without a newline may have been cut inside its last field: refuse when
    that field is shorter than every other value of its column."""
    import pyarrow.compute as pac

    if table.num_rows < 2:
        return
    j = table.num_columns - 1
    col = pac.utf8_length(pac.utf8_trim_whitespace(table.column(j))).to_numpy(zero_copy_only=False)
    if col[-1] < col[:-1].min():
        raise DataError(f"{source}: the last line ({lines[-1]}) ends without a newline and its last field "
                        f"({str(table.column(j)[-1])!r}) is shorter than every other value of that column; "
                        "the file looks cut. If it is complete, end it with a newline.")


def _convert_column(col, role: str, lines, source: str) -> np.ndarray:
    """Strings -> ids (canonical integers become int64, anything else stays a string) or
    numbers (value: float; timestamp: int64 when every entry is an integer, else float)."""
    import pyarrow as pa
    import pyarrow.compute as pac

    col = pac.utf8_trim_whitespace(col)
    is_int = pac.match_substring_regex(col, _INT_RE)
    all_int = bool(pac.all(is_int).as_py())
    if role in ("user", "item"):
        if all_int:
            try:
                return pac.cast(col, pa.int64()).to_numpy()
            except pa.ArrowInvalid:  # >= 2**63: kept as text ids, never wrapped
                pass
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=str)
    if role == "timestamp" and all_int:
        try:
            return pac.cast(col, pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            pass
    try:
        return pac.cast(col, pa.float64()).to_numpy()
    except pa.ArrowInvalid:
        values = col.to_pylist()
        row = next(r for r, v in enumerate(values) if not _is_number(v))  # error path only
        raise DataError(f"{source}: line {lines[row]}: column {role!r} is not numeric ({values[row]!r}).") from None


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def read_interactions(path, **kwargs) -> Interactions:
    """Read CSV/TSV(.gz) or Parquet by extension."""
    name = os.fspath(path).lower()
    if name.endswith(".parquet"):
        return Interactions.from_parquet(path, **kwargs)
    if kwargs.get("sep") is None and not name.removesuffix(".gz").endswith((".csv", ".tsv")):
        warnings.warn(f"guessing whitespace separation for {path}", stacklevel=2)
    return Interactions.from_csv(path, **kwargs)
