"""Score inputs larger than memory: two streaming passes over CSV or GeoParquet chunks.

A site's score depends only on its region's figures and on the region's cumulative energy, so
per-region figures and ranks can be exact over the whole input without holding it:

* pass 1 reads chunk by chunk, validates each (row numbers stay global, duplicate ``site_id`` is
  found across chunks), assigns regions, writes row errors, spills the assigned chunk to an
  anonymous temporary file, and keeps in memory for each valid site only its region index and
  annual energy (12 bytes);
* between the passes: exact per-region energy totals, the score of each region, and the global
  rank of every site (``rank_scores`` over the compact arrays, the same function as in memory);
* pass 2 reads the spilled chunks back, scores each with the exact totals, takes its ranks from
  the global array, and appends it to a temporary output file that replaces the target only at
  the end.

The chunk-level building blocks (:func:`validate_chunk`, :class:`SeenIds`, the chunk writers) are
shared with the dask engine (:mod:`gridmap.engines_dask`).
"""

from __future__ import annotations

import contextlib
import json
import pickle
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import outputs
from .config import Settings, normalise_weights
from .errors import InputError, RowError
from .regions import RegionLayer
from .scoring import (
    assign_sites,
    compute_metrics,
    drop_swapped,
    order_columns,
    provenance,
    rank_scores,
    region_energy_totals,
)
from .sites import CSV_OPTIONS, SITE_FIELDS, SiteBatch, csv_errors, parse_sites

DEFAULT_CHUNK_SIZE = 200_000
ERROR_COLUMNS = ["row", "field", "message"]
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
CSV_SUFFIXES = (".csv", ".txt")
_HASH_KEYS = ("gridmap-site-id1", "gridmap-site-id2")  # two SipHash keys: 128 bits per site_id


# ---------------------------------------------------------------- reading chunks


def is_streamable(path: str | Path) -> bool:
    """Tell whether the batch engines read ``path`` in chunks: CSV, (Geo)Parquet files or folders."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in (*CSV_SUFFIXES, *PARQUET_SUFFIXES)


def read_chunks(path: str | Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[pd.DataFrame]:
    """Raw site tables of at most ``chunk_size`` rows, in file order, as ``read_sites`` would see them."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"sites file {path} does not exist")
    if path.suffix.lower() in CSV_SUFFIXES:
        return _csv_chunks(path, chunk_size)
    if path.is_dir() or path.suffix.lower() in PARQUET_SUFFIXES:
        return _parquet_chunks(path, chunk_size)
    raise InputError(f"{path}: the batch engines read .csv and .parquet (or a folder of .parquet); use --engine memory")


def _csv_chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    # the same reader options as gridmap.sites, so a chunk parses exactly as the whole file would
    with csv_errors():
        reader = pd.read_csv(path, chunksize=chunk_size, **CSV_OPTIONS)
        with reader:
            while (frame := _next_chunk(reader)) is not None:
                yield frame.replace("", np.nan)


def _next_chunk(reader) -> pd.DataFrame | None:
    with warnings.catch_warnings():
        # a first row longer than the header: pandas drops its extra fields with only a warning
        warnings.simplefilter("error", pd.errors.ParserWarning)
        return next(reader, None)


def _parquet_chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(path, format="parquet")
        geo = _geo_metadata(dataset.schema)
        batches = dataset.to_batches(batch_size=chunk_size)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None
    offset = 0
    for batch in batches:
        if batch.num_rows:
            frame = batch.to_pandas()
            yield frame if geo is None else points_to_columns(frame, geo, str(path), offset)
            offset += batch.num_rows


def _geo_metadata(schema) -> dict | None:
    raw = (schema.metadata or {}).get(b"geo")
    return json.loads(raw) if raw else None


def points_to_columns(frame: pd.DataFrame, geo: Mapping, where: str, offset: int = 0) -> pd.DataFrame:
    """Replace a GeoParquet WKB geometry column by ``lon``/``lat``, as ``read_sites`` does."""
    import geopandas as gpd
    import pyproj

    from .sites import _points_to_columns

    name = geo["primary_column"]
    spec = geo["columns"][name]
    if spec.get("encoding", "WKB").upper() != "WKB":
        raise InputError(f"{where}: geometry encoding {spec['encoding']!r} is not supported; write WKB GeoParquet")
    crs = pyproj.CRS.from_user_input(spec["crs"]) if spec.get("crs") is not None else None
    if "crs" not in spec:
        crs = pyproj.CRS.from_user_input("OGC:CRS84")  # the GeoParquet default
    gdf = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries.from_wkb(frame[name], crs=crs), crs=crs)
    try:
        return _points_to_columns(gdf, where)
    except InputError as exc:  # its row numbers count from this chunk
        exc.errors = [RowError(e.row + offset, e.field, e.message) for e in exc.errors]
        raise


def estimate_rows(path: str | Path) -> int | None:
    """Rows in the input, for the progress bar: exact for Parquet, newline count for CSV."""
    path = Path(path)
    if path.suffix.lower() in CSV_SUFFIXES:
        with open(path, "rb") as fh:
            lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b""))
        return max(lines - 1, 0)
    import pyarrow.dataset as ds

    with contextlib.suppress(Exception):
        return ds.dataset(path, format="parquet").count_rows()
    return None


# ---------------------------------------------------------------- site_id duplicates across chunks


def chunk_ids(raw: pd.DataFrame, first_row: int) -> np.ndarray | None:
    """Every row's site_id as ``parse_sites`` derives it (blank -> ``row-N``); None without the column."""
    col = next((c for c in raw.columns if str(c).strip().lower() == "site_id"), None)
    if col is None:
        return None
    ids = raw[col].astype("string").fillna("").str.strip().to_numpy(dtype=object)
    rows = np.arange(first_row, first_row + len(raw))
    return np.where(ids == "", np.char.add("row-", rows.astype(str)).astype(object), ids)


def id_hashes(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two 64-bit SipHashes per id: two distinct ids collide with odds ~n^2 / 2^129 (1e-23 at 1e8)."""
    return tuple(pd.util.hash_array(ids, categorize=False, hash_key=key) for key in _HASH_KEYS)


@dataclass
class DuplicateRows:
    """Rows whose site_id was used before (ascending) and the row that used it first."""

    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="int64"))
    first: np.ndarray = field(default_factory=lambda: np.empty(0, dtype="int64"))

    def between(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.searchsorted(self.rows, [start, stop])
        return self.rows[lo:hi], self.first[lo:hi]

    def extend(self, rows: np.ndarray, first: np.ndarray) -> None:
        self.rows, self.first = np.concatenate([self.rows, rows]), np.concatenate([self.first, first])


class SeenIds:
    """Every site_id seen so far, as sorted 128-bit hashes with the row that used it first.

    Kept as a few sorted levels merged like a binary counter, so adding n ids costs O(n log n)
    in all and memory is 24 bytes per distinct id.
    """

    def __init__(self) -> None:
        self.levels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.duplicates = DuplicateRows()

    def add_chunk(self, h1: np.ndarray, h2: np.ndarray, rows: np.ndarray) -> None:
        """Record a chunk's ids (rows ascending, after every earlier chunk) and its duplicate rows."""
        order = np.lexsort((rows, h2, h1))
        s1, s2, srows = h1[order], h2[order], rows[order]
        head = np.ones(len(order), dtype=bool)
        head[1:] = (s1[1:] != s1[:-1]) | (s2[1:] != s2[:-1])
        group_first = srows[head][np.cumsum(head) - 1]
        earlier = self._lookup(s1[head], s2[head])
        first_of_group = np.where(earlier >= 0, earlier, srows[head])
        first = first_of_group[np.cumsum(head) - 1]
        dup = first != srows
        back = np.argsort(srows[dup], kind="stable")
        self.duplicates.extend(srows[dup][back], first[dup][back])
        new = head & (earlier[np.cumsum(head) - 1] < 0)
        self._push(s1[new], s2[new], group_first[new])

    def _lookup(self, u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
        found = np.full(len(u1), -1, dtype="int64")
        for l1, l2, lrow in self.levels:
            left, right = np.searchsorted(l1, u1, "left"), np.searchsorted(l1, u1, "right")
            one = (right - left == 1) & (l2[np.minimum(left, len(l1) - 1)] == u2)
            found[one] = lrow[left[one]]
            for i in np.flatnonzero(right - left > 1):  # a 64-bit collision: compare the second hash
                hit = np.flatnonzero(l2[left[i] : right[i]] == u2[i])
                if len(hit):
                    found[i] = lrow[left[i] + hit[0]]
        return found

    def _push(self, h1: np.ndarray, h2: np.ndarray, rows: np.ndarray) -> None:
        self.levels.append((h1, h2, rows))
        while len(self.levels) > 1 and len(self.levels[-2][0]) <= 2 * len(self.levels[-1][0]):
            b, a = self.levels.pop(), self.levels.pop()
            merged = [np.concatenate([x, y]) for x, y in zip(a, b, strict=True)]
            order = np.lexsort((merged[1], merged[0]))
            self.levels.append(tuple(m[order] for m in merged))


def validate_chunk(
    raw: pd.DataFrame, first_row: int, duplicates: DuplicateRows, *, settings: Settings, ids: np.ndarray | None = None
) -> SiteBatch:
    """``parse_sites`` on one chunk, with duplicate site_ids judged over the whole input."""
    batch = parse_sites(raw, settings=settings, first_row=first_row)
    dup_rows, dup_first = duplicates.between(first_row, first_row + len(raw))
    local_dups = any(_is_duplicate_error(e) for e in batch.errors)
    if not len(dup_rows) and not local_dups:
        return batch
    ids = chunk_ids(raw, first_row) if ids is None else ids
    errors = [e for e in batch.errors if not _is_duplicate_error(e)]
    errors += [RowError(int(r), "site_id", f"duplicate site_id {_show(ids[r - first_row])} (first used in row {f})")
               for r, f in zip(dup_rows, dup_first, strict=True)]  # fmt: skip
    sites = batch.sites[~batch.sites["row"].isin(dup_rows)].reset_index(drop=True)
    return SiteBatch(sites=sites, errors=sorted(errors, key=_order), total_rows=batch.total_rows)


def _is_duplicate_error(e: RowError) -> bool:
    return e.field == "site_id" and e.message.startswith("duplicate site_id ")


def _show(value) -> str:  # as gridmap.sites shows a value in a message
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _order(e: RowError) -> tuple:  # gridmap.sites' error order: row, then field in contract order
    return (e.row, SITE_FIELDS.index(e.field) if e.field in SITE_FIELDS else 99, e.field)


# ---------------------------------------------------------------- scoring chunks


@dataclass
class Pass1Chunk:
    """What pass 1 keeps of one chunk: its row count, row errors, and per valid site region and energy."""

    rows: int
    errors: list[RowError]
    region: np.ndarray
    energy: np.ndarray
    bounds: np.ndarray  # min lon, min lat, max lon, max lat of the valid sites (NaN if none)


def assign_chunk(batch: SiteBatch, layer: RegionLayer, settings: Settings) -> tuple[pd.DataFrame, Pass1Chunk]:
    """Assign one validated chunk; return the assigned frame and its compact pass-1 record.

    Sites whose lon/lat look swapped (outside every region, inside one when swapped) become row
    errors here, as in ``score_sites``.
    """
    assigned, swapped = drop_swapped(assign_sites(batch.sites, layer, settings=settings), layer, settings=settings)
    errors = sorted([*batch.errors, *swapped], key=_order) if swapped else batch.errors
    lonlat = assigned[["lon", "lat"]].to_numpy()
    bounds = np.concatenate([lonlat.min(axis=0), lonlat.max(axis=0)]) if len(lonlat) else np.full(4, np.nan)
    record = Pass1Chunk(rows=batch.total_rows, errors=errors, bounds=bounds,
                        region=assigned["region_index"].to_numpy(dtype="int32"),
                        energy=assigned["annual_energy_mwh"].to_numpy(dtype="float64"))  # fmt: skip
    return assigned, record


@dataclass
class Ranking:
    """Exact whole-input figures computed between the passes."""

    totals: np.ndarray  # annual MWh of all valid sites per region index
    region_score: np.ndarray  # the score of every site in each region
    ranks: pd.api.extensions.ExtensionArray  # Int64 rank of every valid site, in input order
    bounds: list[float]  # bbox of all valid sites, for the GeoParquet metadata

    @classmethod
    def build(cls, records: list[Pass1Chunk], layer: RegionLayer, weights: Mapping[str, float]) -> Ranking:
        region = np.concatenate([r.region for r in records]) if records else np.empty(0, "int32")
        energy = np.concatenate([r.energy for r in records]) if records else np.empty(0)
        compact = pd.DataFrame({"region_index": region, "annual_energy_mwh": energy}, copy=False)
        totals = region_energy_totals(compact, len(layer.frame))
        region_score = _region_scores(layer, totals, weights)
        ok = region >= 0
        score = np.where(ok, region_score[np.maximum(region, 0)], np.nan)
        sales = layer.figures["retail_sales_mwh"].to_numpy(dtype="float64", na_value=np.nan)
        share = energy / np.where(ok, sales[np.maximum(region, 0)], np.nan)  # demand_growth_share, as scored
        del region, energy
        return cls(totals=totals, region_score=region_score, ranks=rank_scores(score, share),
                   bounds=_union_bounds([r.bounds for r in records]))  # fmt: skip


def _region_scores(layer: RegionLayer, totals: np.ndarray, weights: Mapping[str, float]) -> np.ndarray:
    """Score of a site in each region: it depends on the region's figures and cumulative energy only."""
    n = len(layer.frame)
    probe = pd.DataFrame({"region_index": np.arange(n), "annual_energy_mwh": np.ones(n)})
    return compute_metrics(probe, layer, totals, weights=weights)["score"].to_numpy(dtype="float64")


def _union_bounds(parts: list[np.ndarray]) -> list[float]:
    stacked = np.array([p for p in parts if np.isfinite(p).all()]).reshape(-1, 4)
    if not len(stacked):
        return []
    return [float(v) for v in (*stacked[:, :2].min(axis=0), *stacked[:, 2:].max(axis=0))]


def score_chunk(
    assigned: pd.DataFrame, layer: RegionLayer, ranking: Ranking, ranks, *, weights: Mapping[str, float]
) -> pd.DataFrame:
    """Metrics with the whole input's totals, and the chunk's slice of the global ranks."""
    frame = compute_metrics(assigned, layer, ranking.totals, weights=weights)
    idx = frame["region_index"].to_numpy()
    expected = np.where(idx >= 0, ranking.region_score[np.maximum(idx, 0)], np.nan)
    if not np.array_equal(frame["score"].to_numpy(dtype="float64"), expected, equal_nan=True):
        # the ranks were computed on the premise that a score depends on the region only
        raise RuntimeError("scores differ from the per-region scores the ranking used; the batch ranking is invalid")
    frame["rank"] = ranks
    return order_columns(frame)


# ---------------------------------------------------------------- writing chunks


class ErrorSink:
    """Row errors appended to a CSV (as ``outputs.write_errors`` writes them); keeps counts and the first few."""

    def __init__(self, path: Path, *, keep: int = 50) -> None:
        self.fh = open(path, "w", encoding="utf-8", newline="")
        self.count, self.rows, self.keep, self.first = 0, 0, keep, []

    def add(self, errors: list[RowError]) -> None:
        if not errors:
            return
        table = pd.DataFrame([e.as_dict() for e in errors], columns=ERROR_COLUMNS)
        outputs.neutralise_formulas(table).to_csv(self.fh, index=False, header=self.count == 0, lineterminator="\n")
        self.count += len(errors)
        self.rows += len({e.row for e in errors})  # a row's errors never straddle two chunks
        self.first.extend(errors[: max(self.keep - len(self.first), 0)])

    def close(self) -> None:
        if self.count == 0:
            pd.DataFrame(columns=ERROR_COLUMNS).to_csv(self.fh, index=False, lineterminator="\n")
        self.fh.close()


class ChunkWriter:
    """Scored chunks appended to a temporary output file in GeoParquet, CSV or GeoJSON."""

    def __init__(self, path: Path, fmt: str, provenance: dict, bounds: list[float]) -> None:
        self.path, self.fmt, self.provenance, self.bounds = path, fmt, provenance, bounds
        self.fh, self.parquet, self.pending, self.written = None, None, None, 0

    def write(self, frame: pd.DataFrame) -> None:
        if not len(frame):
            self.pending = frame  # keeps the columns, in case no chunk has a site
            return
        getattr(self, f"_write_{self.fmt}")(frame)
        self.written += len(frame)

    def close(self) -> None:
        if not self.written and self.pending is not None:
            getattr(self, f"_write_{self.fmt}")(self.pending)
        if self.parquet is not None:
            self.parquet.close()
        if self.fh is not None:
            if self.fmt == "geojson":
                self.fh.write(_GEOJSON_TAIL)
            self.fh.close()

    def _write_parquet(self, frame: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = outputs.geoparquet_table(frame, self.provenance)
        if self.parquet is None:
            meta = dict(table.schema.metadata)
            geo = json.loads(meta[b"geo"])
            geo["columns"]["geometry"]["bbox"] = self.bounds  # of the whole output, known since pass 1
            meta[b"geo"] = json.dumps(geo).encode()
            self.schema = table.schema.with_metadata(meta)
            self.parquet = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self.parquet.write_table(table.cast(self.schema))

    def _write_csv(self, frame: pd.DataFrame) -> None:
        text = outputs.csv_text(frame, self.provenance)
        if self.fh is None:
            self.fh = open(self.path, "w", encoding="utf-8", newline="")
        else:
            text = text.split("\n", 1)[1]  # the header only once
        self.fh.write(text)

    def _write_geojson(self, frame: pd.DataFrame) -> None:
        text = outputs.geojson_text(frame, self.provenance)
        head = outputs.geojson_text(frame.iloc[:0], self.provenance)[: -len(_GEOJSON_TAIL)]
        body = text[len(head) : -len(_GEOJSON_TAIL)]
        if self.fh is None:
            self.fh = open(self.path, "w", encoding="utf-8", newline="")
            self.fh.write(head)
        elif body:
            body = "," + body
        self.fh.write(body)


_GEOJSON_TAIL = "\n]}\n"


@contextlib.contextmanager
def batch_outputs(output: Path, errors_path: Path, fmt: str) -> Iterator[tuple[Path, Path]]:
    """Temporary paths for the output and the errors file; both replace their targets only on success."""
    with outputs.atomic_path(errors_path) as err_tmp, outputs.atomic_path(output) as out_tmp:
        yield out_tmp, err_tmp


# ---------------------------------------------------------------- the streaming engine


@dataclass
class BatchResult:
    """What a batch run reports: counts, the top-ranked sites, the first errors, provenance."""

    summary: dict
    top: pd.DataFrame
    first_errors: list[RowError]
    provenance: dict


class Tally:
    """Summary counts and the top-ranked sites, accumulated chunk by chunk."""

    def __init__(self, top: int) -> None:
        self.top, self.sites = top, 0
        self.by_assignment: dict[str, int] = {}
        self.by_region: dict[str, int] = {}
        self.best = pd.DataFrame()

    def add(self, frame: pd.DataFrame) -> None:
        self.sites += len(frame)
        for counts, col in ((self.by_assignment, "assignment"), (self.by_region, "region_id")):
            for key, n in frame[col].dropna().value_counts().items():
                counts[key] = counts.get(key, 0) + int(n)
        if self.top:
            best = frame.dropna(subset=["score"]).sort_values(["rank", "site_id"]).head(self.top)
            both = [f for f in (self.best, best) if len(f)]
            self.best = pd.concat(both).sort_values(["rank", "site_id"]).head(self.top) if both else self.best

    def result(self, errors: ErrorSink, prov: dict) -> BatchResult:
        summary = {"sites": self.sites, "errors": errors.count, "rows_with_errors": errors.rows,
                   "by_assignment": self.by_assignment, "by_region": self.by_region}  # fmt: skip
        return BatchResult(summary=summary, top=self.best, first_errors=errors.first, provenance=prov)


def progress_bar(enabled: bool, desc: str, total: int | None):
    """Make a tqdm bar on stderr showing sites/s and time left (a no-op bar when disabled)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" sites", unit_scale=True, disable=not enabled, dynamic_ncols=True,
                mininterval=0.5)  # fmt: skip


def score_stream(
    sites_path: str | Path,
    output: str | Path,
    layer: RegionLayer,
    *,
    errors_path: str | Path,
    weights: Mapping[str, float] | None = None,
    settings: Settings | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    top: int = 5,
    progress: bool = False,
) -> BatchResult:
    """Score a CSV or GeoParquet input in two streaming passes, in memory bounded by ``chunk_size``.

    Pass 1 spills each validated, assigned chunk to an anonymous temporary file beside the output
    (deleted by the OS even if the process is killed), so pass 2 neither re-reads nor re-validates.

    Parameters
    ----------
    sites_path
        CSV or GeoParquet file (or a folder of Parquet files) of sites.
    output
        Output file; the format follows its extension. Written to a temporary file renamed at the end.
    layer
        The region layer.
    errors_path
        Row errors CSV, written atomically like the output.
    weights, settings
        As for :func:`gridmap.scoring.score_sites`.
    chunk_size
        Rows read, validated and scored at a time.
    top
        How many top-ranked sites the result keeps for the summary.
    progress
        Show progress bars (sites/s, time left) on stderr.
    """
    settings = settings or Settings()
    weights = normalise_weights(weights if weights is not None else settings.weights)
    output, errors_path, prov = Path(output), Path(errors_path), provenance(layer, weights, settings)
    fmt = outputs.format_for(output)
    estimate = estimate_rows(sites_path) if progress else None
    with batch_outputs(output, errors_path, fmt) as (out_tmp, err_tmp), _spill_file(output) as spill:
        sink = ErrorSink(err_tmp)
        try:
            records = _stream_pass1(sites_path, layer, settings, chunk_size, sink, spill, progress, estimate)
            ranking = Ranking.build(records, layer, weights)
            rows = [r.rows for r in records]
            del records
            writer = ChunkWriter(out_tmp, fmt, prov, ranking.bounds)
            try:
                bar = progress_bar(progress, "pass 2/2 score", sum(rows))
                tally = _stream_pass2(spill, rows, layer, weights, ranking, writer, Tally(top), bar)
            finally:
                writer.close()
        finally:
            sink.close()
    return tally.result(sink, prov)


def _spill_file(output: Path):
    # unlinked at once on POSIX: nothing to clean up after an interrupt, even SIGKILL
    return tempfile.TemporaryFile(prefix=".gridmap-spill-", dir=output.parent or ".")


def _stream_pass1(path, layer, settings, chunk_size, sink, spill, progress, estimate) -> list[Pass1Chunk]:
    seen, records, first_row = SeenIds(), [], 1
    with progress_bar(progress, "pass 1/2 check", estimate) as bar:
        for raw in read_chunks(path, chunk_size=chunk_size):
            ids = chunk_ids(raw, first_row)
            if ids is not None:
                seen.add_chunk(*id_hashes(ids), np.arange(first_row, first_row + len(raw)))
            batch = validate_chunk(raw, first_row, seen.duplicates, settings=settings, ids=ids)
            assigned, record = assign_chunk(batch, layer, settings)
            pickle.dump(assigned, spill, protocol=pickle.HIGHEST_PROTOCOL)  # keeps every dtype exactly
            sink.add(record.errors)
            record.errors = []
            records.append(record)
            first_row += len(raw)
            bar.update(len(raw))
    if first_row == 1:
        raise InputError("no sites: the input has no data rows")
    return records


def _stream_pass2(spill, rows, layer, weights, ranking, writer, tally, bar) -> Tally:
    spill.seek(0)
    done = 0
    with bar:
        for n in rows:
            assigned = pickle.load(spill)
            frame = score_chunk(assigned, layer, ranking, ranking.ranks[done : done + len(assigned)], weights=weights)
            writer.write(frame)
            tally.add(frame)
            done += len(assigned)
            bar.update(n)
    return tally
