"""The batch job on a dask.distributed cluster: dask-geopandas partitions, exact whole-input figures.

The same job as :func:`gridmap.batch.score_stream`, with the chunks being dask partitions scored by
cluster workers, in three stages:

A. each partition's row count and 128-bit site_id hashes (16 bytes a row) come back to the client,
   which fixes every partition's first row number and finds duplicate site_ids across partitions;
B. workers validate and assign their partitions and send back the row errors and, per valid site,
   the region index and annual energy (12 bytes); the client sums the exact per-region totals and
   ranks every site (:class:`gridmap.batch.Ranking`);
C. workers score their partitions with those totals and their slice of the ranks; the client
   writes the scored partitions in input order into a temporary file renamed at the end.

Workers read the input themselves (a path every worker can read) and load the region layer from
its path once per worker process (settings are shipped, never the layer object). dask is imported
only here, so ``import gridmap.scoring`` never imports it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from . import outputs
from .batch import (
    CSV_SUFFIXES,
    BatchResult,
    ChunkWriter,
    DuplicateRows,
    ErrorSink,
    Ranking,
    SeenIds,
    Tally,
    assign_chunk,
    batch_outputs,
    chunk_ids,
    estimate_rows,
    id_hashes,
    is_streamable,
    progress_bar,
    read_chunks,
    score_chunk,
    validate_chunk,
)
from .config import Settings, normalise_weights
from .errors import InputError
from .regions import RegionLayer, default_layer
from .scoring import provenance

CSV_BLOCKSIZE = "16MB"
# a worker holds about 1 KB per row of the partition it works on: keep partitions near this size
ROWS_PER_PARTITION = 250_000


def score_dask(
    sites_path: str | Path,
    output: str | Path,
    layer: RegionLayer,
    *,
    errors_path: str | Path,
    weights: Mapping[str, float] | None = None,
    settings: Settings | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    partitions: int | None = None,
    progress: bool = False,
    top: int = 5,
) -> BatchResult:
    """Score a CSV or GeoParquet input on a dask.distributed cluster; output as :func:`score_stream`.

    Parameters
    ----------
    sites_path
        CSV file, GeoParquet file or folder of Parquet files, at a path every worker can read.
    output, errors_path
        Written by this (client) process, atomically.
    layer
        The region layer (this process); workers load their own from ``settings.regions_path``.
    weights, settings
        As for :func:`gridmap.scoring.score_sites`.
    scheduler
        ``tcp://host:port`` of a running scheduler; a LocalCluster of ``workers`` processes if None.
    workers
        LocalCluster worker processes (one thread each: GEOS prepared geometries are not thread-safe).
    partitions
        Repartition the input into this many partitions.
    progress, top
        Progress bars on stderr; how many top-ranked sites the result keeps.
    """
    settings = settings or Settings()
    weights = normalise_weights(weights if weights is not None else settings.weights)
    output, errors_path, prov = Path(output), Path(errors_path), provenance(layer, weights, settings)
    fmt = outputs.format_for(output)
    spec = _settings_spec(settings)
    with _client(scheduler, workers) as client:
        parts, id_parts = input_partitions(sites_path, partitions=partitions)
        estimate = estimate_rows(sites_path) if progress else None
        firsts, duplicates = _stage_ids(client, id_parts, progress, estimate)
        with batch_outputs(output, errors_path, fmt) as (out_tmp, err_tmp):
            sink = ErrorSink(err_tmp)
            prefix = f"gridmap-spill-{uuid.uuid4().hex}-"
            try:
                records, spills = _stage_assign(client, parts, firsts, duplicates, spec, sink, prefix, progress)
                client.run(_trim_memory)  # workers idle while the client ranks: give their freed memory back
                ranking = Ranking.build(records, layer, weights)
                spills = [(*s, len(r.region)) for s, r in zip(spills, records, strict=True)]
                del records
                writer = ChunkWriter(out_tmp, fmt, prov, ranking.bounds)
                try:
                    tally = _stage_score(client, parts, firsts, duplicates, spec, weights, ranking, spills, writer,
                                         Tally(top), progress)  # fmt: skip
                finally:
                    writer.close()
            finally:
                sink.close()
                with contextlib.suppress(Exception):  # the cluster may be what failed
                    client.run(_remove_spills, prefix)
    return tally.result(sink, prov)


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int) -> Iterator:
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    # processes, one thread each: GEOS prepared geometries must not be shared between threads
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            yield client


def input_partitions(path: str | Path, *, partitions: int | None = None) -> tuple[list, list]:
    """Split the input into dask delayed partitions, in row order (CSV, GeoParquet or plain Parquet).

    Returns the partitions, and the same partitions holding only the ``site_id`` column (or the
    first column): dask pushes that projection into the reader, so stage A reads little.
    """
    import dask.dataframe as dd

    path = Path(path)
    if not path.exists():
        raise InputError(f"sites file {path} does not exist")
    if not is_streamable(path):
        raise InputError(f"{path}: the dask engine reads .csv, .parquet or a folder of .parquet; use --engine memory")
    if path.suffix.lower() in CSV_SUFFIXES:
        next(read_chunks(path, chunk_size=1), None)  # whole-file problems (empty, long first row) as in memory
        ddf = dd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, blocksize=CSV_BLOCKSIZE)
        ddf = ddf.map_partitions(_csv_blanks, meta=ddf._meta)
    else:
        ddf = _read_parquet(path)
        partitions = partitions or _parquet_partitions(path, ddf.npartitions)
    if partitions and partitions != ddf.npartitions:
        ddf = ddf.repartition(npartitions=partitions)
    id_col = next((c for c in ddf.columns if str(c).strip().lower() == "site_id"), ddf.columns[0])
    return list(ddf.to_delayed()), list(ddf[[id_col]].to_delayed())


def _parquet_partitions(path: Path, npartitions: int) -> int | None:
    """More partitions when row groups are large (pyarrow writes up to ~1M rows a group)."""
    import pyarrow.dataset as ds

    rows = ds.dataset(path, format="parquet").count_rows()
    return -(-rows // ROWS_PER_PARTITION) if rows > npartitions * ROWS_PER_PARTITION else None


def _read_parquet(path: Path):
    import dask.dataframe as dd
    import dask_geopandas

    from .batch import _geo_metadata

    try:
        import pyarrow.dataset as ds

        geo = _geo_metadata(ds.dataset(path, format="parquet").schema)
        # a partition per row group (pyarrow writes at most ~1M rows per group): never a whole file at once
        read = dask_geopandas.read_parquet if geo else dd.read_parquet
        return read(path, split_row_groups=True)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"{path}: not a readable Parquet file: {exc}") from None


def raw_frame(part, where: str, offset: int = 0) -> pd.DataFrame:
    """Give a partition's rows as ``read_sites`` sees them: GeoParquet points as lon/lat."""
    import geopandas as gpd

    from .sites import _points_to_columns

    if isinstance(part, gpd.GeoDataFrame):
        try:
            return _points_to_columns(part.reset_index(drop=True), where)
        except InputError as exc:
            from .errors import RowError

            exc.errors = [RowError(e.row + offset, e.field, e.message) for e in exc.errors]
            raise
    return part.reset_index(drop=True)


def _csv_blanks(part: pd.DataFrame) -> pd.DataFrame:
    return part.replace("", np.nan)  # as gridmap.sites reads a CSV


# ---------------------------------------------------------------- worker tasks (module level: workers import them)


def _ids_task(part) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    raw = raw_frame(part, "sites")
    ids = chunk_ids(raw, 1)  # the row numbers only matter for blank ids, fixed below
    if ids is None:
        return len(raw), None, None
    blank = raw[_site_id_column(raw)].astype("string").fillna("").str.strip().to_numpy(dtype=object) == ""
    return len(raw), *id_hashes(ids), blank


def _site_id_column(raw: pd.DataFrame):
    return next(c for c in raw.columns if str(c).strip().lower() == "site_id")


def _assign_task(part, first_row: int, duplicates: DuplicateRows, spec: dict, spill: str) -> tuple:
    """Validate and assign a partition; spill the assigned frame to this worker's local disk for stage C."""
    from dask.distributed import get_worker

    settings, layer = _worker_setup(spec)
    raw = raw_frame(part, "sites", first_row - 1)
    batch = validate_chunk(raw, first_row, duplicates, settings=settings)
    assigned, record = assign_chunk(batch, layer, settings)
    worker = get_worker()
    path = Path(worker.local_directory) / spill
    with open(path, "wb") as fh:
        pickle.dump(assigned, fh, protocol=pickle.HIGHEST_PROTOCOL)  # keeps every dtype exactly
    del raw, batch, assigned
    _trim_memory()  # a worker's heap otherwise keeps the high-water mark of its largest partition
    return record, worker.address, str(path)


def _score_spilled(path: str, spec, weights, ranking_parts, ranks) -> pd.DataFrame:
    settings, layer = _worker_setup(spec)
    with open(path, "rb") as fh:
        assigned = pickle.load(fh)
    os.unlink(path)
    ranking = Ranking(totals=ranking_parts[0], region_score=ranking_parts[1], ranks=ranks, bounds=[])
    scored = score_chunk(assigned, layer, ranking, ranks, weights=weights)
    del assigned
    _trim_memory()
    return scored


def _trim_memory() -> None:
    """Return freed heap to the OS (glibc keeps it otherwise); a no-op elsewhere."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _remove_spills(prefix: str, dask_worker=None) -> None:
    for path in Path(dask_worker.local_directory).glob(f"{prefix}*"):
        path.unlink(missing_ok=True)


def _score_task(part, first_row, duplicates, spec, weights, ranking_parts, ranks) -> pd.DataFrame:
    """Stage C from the input again, for a partition whose stage-B worker has left the cluster."""
    from .scoring import assign_sites, drop_swapped

    settings, layer = _worker_setup(spec)
    raw = raw_frame(part, "sites", first_row - 1)
    batch = validate_chunk(raw, first_row, duplicates, settings=settings)
    # swapped lon/lat were reported as row errors in pass 1 (assign_chunk); drop them again here
    assigned, _ = drop_swapped(assign_sites(batch.sites, layer, settings=settings), layer, settings=settings)
    if len(assigned) != len(ranks):
        raise InputError("the input changed while it was being scored; run again")
    ranking = Ranking(totals=ranking_parts[0], region_score=ranking_parts[1], ranks=ranks, bounds=[])
    return score_chunk(assigned, layer, ranking, ranks, weights=weights)


def _worker_setup(spec: dict) -> tuple[Settings, RegionLayer]:
    settings = Settings(**spec)
    return settings, default_layer(settings)  # loaded once per worker process (default_layer caches it)


def _settings_spec(settings: Settings) -> dict:
    """Give settings as plain values a worker can unpickle (the weights mapping proxy is not picklable)."""
    spec = {f.name: getattr(settings, f.name) for f in fields(settings)}
    spec["weights"] = dict(spec["weights"])
    return spec


# ---------------------------------------------------------------- the stages, on the client


def _stage_ids(client, parts: list, progress: bool, total_rows: int | None) -> tuple[list[int], DuplicateRows]:
    """Each partition's first row number (and one past the last row, at the end), and the duplicate rows."""
    from dask import delayed

    futures = client.compute([delayed(_ids_task)(p) for p in parts])
    seen, firsts, first_row = SeenIds(), [], 1
    with progress_bar(progress, "1/3 read ids", total_rows) as bar:
        for future in futures:
            n, h1, h2, *blank = future.result()
            future.release()
            firsts.append(first_row)
            if h1 is not None:
                h1, h2 = _fix_blank_ids(h1, h2, blank[0], first_row)
                seen.add_chunk(h1, h2, np.arange(first_row, first_row + n))
            first_row += n
            bar.update(n)
    if first_row == 1:
        raise InputError("no sites: the input has no data rows")
    return [*firsts, first_row], seen.duplicates


def _fix_blank_ids(h1: np.ndarray, h2: np.ndarray, blank: np.ndarray, first_row: int):
    """Blank site_ids become ``row-N`` with the global row number, known only here."""
    if blank.any():
        rows = np.flatnonzero(blank) + first_row
        b1, b2 = id_hashes(np.char.add("row-", rows.astype(str)).astype(object))
        h1, h2 = h1.copy(), h2.copy()
        h1[blank], h2[blank] = b1, b2
    return h1, h2


def _stage_assign(client, parts, firsts, duplicates, spec, sink: ErrorSink, prefix, progress) -> tuple[list, list]:
    """Pass-1 records of every partition, and where (worker, path) each assigned partition was spilled."""
    from dask import delayed

    tasks = [delayed(_assign_task)(p, f, _dup_slice(duplicates, f, firsts, i), spec, f"{prefix}{i}.pkl")
             for i, (p, f) in enumerate(zip(parts, firsts[:-1], strict=True))]  # fmt: skip
    records, spills = [], []
    with progress_bar(progress, "2/3 check", firsts[-1] - 1) as bar:
        for i, future in enumerate(client.compute(tasks)):
            record, *spill = future.result()
            future.release()
            sink.add(record.errors)
            record.errors = []
            records.append(record)
            spills.append(spill)
            bar.update(firsts[i + 1] - firsts[i])
    return records, spills


def _dup_slice(duplicates: DuplicateRows, first: int, firsts: list[int], i: int) -> DuplicateRows:
    return DuplicateRows(*duplicates.between(first, firsts[i + 1]))


def _stage_score(client, parts, firsts, duplicates, spec, weights, ranking, spills, writer, tally, progress) -> Tally:
    """Score partitions from their spills, in a sliding window so the cluster never holds the whole output."""
    from dask import delayed

    window = len(client.scheduler_info().get("workers", {})) + 1
    starts = np.concatenate([[0], np.cumsum([s[2] for s in spills])]).astype(int)
    figures = client.scatter([(ranking.totals, ranking.region_score)], broadcast=True)[0]

    def submit(i):
        ranks = ranking.ranks[starts[i] : starts[i + 1]]
        address, path, _ = spills[i]
        if address in client.scheduler_info().get("workers", {}):
            return client.submit(_score_spilled, path, spec, dict(weights), figures, ranks, workers=[address],
                                 allow_other_workers=False, pure=False)  # fmt: skip
        task = delayed(_score_task)(parts[i], firsts[i], _dup_slice(duplicates, firsts[i], firsts, i), spec,
                                    dict(weights), figures, ranks)  # fmt: skip
        return client.compute(task)

    pending = [submit(i) for i in range(min(window, len(parts)))]
    with progress_bar(progress, "3/3 score", firsts[-1] - 1) as bar:
        for i in range(len(parts)):
            frame = pending.pop(0).result()
            if i + window < len(parts):
                pending.append(submit(i + window))
            writer.write(frame)
            tally.add(frame)
            bar.update(firsts[i + 1] - firsts[i])
    return tally
