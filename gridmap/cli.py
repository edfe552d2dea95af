"""The ``gridmap`` command: score, regions (and serve, map). It calls the same core as the web app.

Exit status of ``gridmap score``: 0 all rows scored; 3 output written but some rows had errors
(listed on stderr and in the errors file); 2 nothing written (bad option or unreadable input).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path

import click

from .config import Settings, load_weights_file, parse_weights
from .errors import GridmapError, InputError, RowError

EXIT_ROW_ERRORS = 3
EXIT_FATAL = 2


class FatalError(click.ClickException):
    """Nothing was written: the options or the input as a whole are unusable."""

    exit_code = EXIT_FATAL


def _settings(ctx: click.Context) -> Settings:
    return ctx.obj["settings"]


@click.group()
@click.option("--regions", "regions_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Region layer (GeoParquet, GeoPackage, GeoJSON, Shapefile); default: US states.")  # fmt: skip
@click.pass_context
def main(ctx: click.Context, regions_path: Path | None) -> None:
    """gridmap: grid-impact scoring of candidate data-center sites."""
    try:
        settings = Settings.from_env()
    except GridmapError as exc:
        raise click.UsageError(str(exc)) from None
    if regions_path:
        settings = replace(settings, regions_path=regions_path, display_regions_path=None)
    ctx.obj = {"settings": settings}


def weights_option(value: str | None) -> dict[str, float] | None:
    """``--weights``: ``name=value,...`` or a TOML/JSON file path."""
    if not value:
        return None
    if Path(value).suffix.lower() in (".toml", ".json"):
        return load_weights_file(value)
    return parse_weights(value)


def common_options(fn):
    """Options shared by ``score`` and ``map``."""
    options = [
        click.option("--regions", "regions_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Region layer file; default: embedded US states (also accepted before the command)."),
        click.option("--weights", help="Weights 'renewable=0.4,carbon=0.2,stress=0.3,price=0.1' or .toml/.json file."),
        click.option("--nearest-km", type=float, help="Nearest-region distance for sites just outside every region."),
        click.option("--default-pue", type=float, help="PUE for sites that give none."),
        click.option("--default-load-factor", type=float, help="Load factor for sites that give none."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def resolve_settings(ctx: click.Context, regions_path, nearest_km, default_pue, default_load_factor) -> Settings:
    """Apply command options over the group's settings."""
    changes = {k: v for k, v in {"nearest_km": nearest_km, "default_pue": default_pue,
               "default_load_factor": default_load_factor}.items() if v is not None}  # fmt: skip
    if regions_path:
        changes |= {"regions_path": regions_path, "display_regions_path": None}
    return replace(_settings(ctx), **changes)


ENGINES = ["auto", "memory", "stream", "dask"]
AUTO_STREAM_BYTES = 64 << 20


@main.command()
@click.argument("sites", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file; format from the extension: .geojson, .csv or .parquet.")  # fmt: skip
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Row errors CSV (default: OUTPUT stem + '.errors.csv', beside the output).")  # fmt: skip
@click.option("--top", default=5, show_default=True, help="How many top-ranked sites the summary lists.")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
              help="memory: read all at once; stream: two passes over chunks in bounded memory (CSV, "
                   "GeoParquet); dask: the same on a dask.distributed cluster; auto: dask with --scheduler, "
                   f"stream for CSV/Parquet over {AUTO_STREAM_BYTES >> 20} MB or a folder, else memory.")  # fmt: skip
@click.option("--chunk-size", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Rows per chunk (stream engine).")  # fmt: skip
@click.option("--scheduler", metavar="tcp://HOST:PORT",
              help="dask scheduler address (dask engine); default: a LocalCluster on this machine.")  # fmt: skip
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="LocalCluster worker processes when no --scheduler is given (dask engine).")  # fmt: skip
@click.option("--partitions", type=click.IntRange(min=1),
              help="Partitions of the input (dask engine); default: ~250,000 rows each (16 MB of CSV).")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@common_options
@click.pass_context
def score(ctx, sites, output, errors_path, top, engine, chunk_size, scheduler, workers, partitions, quiet,
          regions_path, weights, nearest_km, default_pue, default_load_factor):  # fmt: skip
    """Score the candidate sites in SITES (CSV, GeoJSON or GeoParquet) and write OUTPUT."""
    from . import outputs
    from .regions import default_layer

    try:
        settings = resolve_settings(ctx, regions_path, nearest_km, default_pue, default_load_factor)
        outputs.format_for(output)
        _refuse_overwrite(sites, output)
        chosen = weights_option(weights)
        engine = _choose_engine(engine, sites, scheduler)
        layer = default_layer(settings)
        errors_path = errors_path or output.with_name(output.name.split(".")[0] + ".errors.csv")
        run = {"memory": _score_memory, "stream": _score_stream, "dask": _score_dask}[engine]
        options = dict(chunk_size=chunk_size, scheduler=scheduler, workers=workers, partitions=partitions,
                       progress=not quiet, top=top)  # fmt: skip
        with _terminate_as_interrupt():
            result = run(sites, output, errors_path, layer=layer, weights=chosen, settings=settings, **options)
    except InputError as exc:
        _print_errors(exc.errors)
        raise FatalError(str(exc)) from None
    except GridmapError as exc:
        raise FatalError(str(exc)) from None
    _print_summary(result, layer, output, errors_path)
    if result.summary["errors"]:
        _print_errors(result.first_errors, total=result.summary["errors"])
        ctx.exit(EXIT_ROW_ERRORS)


def _choose_engine(engine: str, sites: Path, scheduler: str | None) -> str:
    from .batch import is_streamable

    if scheduler and engine not in ("auto", "dask"):
        raise InputError(f"--scheduler is for --engine dask, not --engine {engine}")
    if engine != "auto":
        return engine
    if scheduler:
        return "dask"
    big = sites.is_dir() or sites.stat().st_size > AUTO_STREAM_BYTES
    return "stream" if big and is_streamable(sites) else "memory"


def _score_memory(sites, output, errors_path, *, layer, weights, settings, top, **_):
    from . import outputs
    from .batch import BatchResult
    from .scoring import score_sites
    from .sites import read_sites

    result = score_sites(read_sites(sites, settings=settings), layer, weights=weights, settings=settings)
    outputs.write_scored(result.frame, output, result.provenance)
    outputs.write_errors(result.errors, errors_path)
    best = result.frame.dropna(subset=["score"]).sort_values(["rank", "site_id"]).head(top)
    return BatchResult(summary=result.summary(), top=best, first_errors=result.errors[:50],
                       provenance=result.provenance)  # fmt: skip


def _score_stream(sites, output, errors_path, *, layer, weights, settings, chunk_size, progress, top, **_):
    from .batch import score_stream

    return score_stream(sites, output, layer, errors_path=errors_path, weights=weights, settings=settings,
                        chunk_size=chunk_size, progress=progress, top=top)  # fmt: skip


def _score_dask(sites, output, errors_path, *, layer, weights, settings, scheduler, workers, partitions, progress,
                top, **_):  # fmt: skip
    from .engines_dask import score_dask

    return score_dask(sites, output, layer, errors_path=errors_path, weights=weights, settings=settings,
                      scheduler=scheduler, workers=workers, partitions=partitions, progress=progress,
                      top=top)  # fmt: skip


@contextlib.contextmanager
def _terminate_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt so temporary outputs are removed and targets stay intact."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _refuse_overwrite(source: Path, output: Path) -> None:
    if output.exists() and output.resolve() == source.resolve():
        raise InputError(f"output {output} is the input file; choose another name")


def _print_errors(errors: list[RowError], limit: int = 50, total: int | None = None) -> None:
    total = len(errors) if total is None else total
    for e in errors[:limit]:
        click.echo(f"error: row {e.row}, field {e.field or '-'}: {e.message}", err=True)
    if total > limit:
        click.echo(f"error: ... and {total - limit} more (see the errors file)", err=True)


def _print_summary(result, layer, output: Path, errors_path: Path) -> None:
    s = result.summary
    click.echo(f"layer: {layer.name} (data year {layer.data_year}); method {result.provenance['method_version']}")
    click.echo(f"scored {s['sites']} sites; {s['rows_with_errors']} rows with errors")
    click.echo("assignment: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_assignment"].items())))
    regions = sorted(s["by_region"].items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} {v}" for k, v in regions[:15])
    click.echo(f"sites per region: {shown}{' ...' if len(regions) > 15 else ''}")
    if len(result.top):
        click.echo(f"top {len(result.top)}:")
    for r in result.top.itertuples():
        click.echo(f"  #{r.rank:<4} {r.score:6.1f}  {r.region_id:<6} {str(r.site_id)[:30]:<30} {str(r.name)[:40]}")
    click.echo(f"wrote {output} and {errors_path}")


@main.command("regions")
@click.option("--regions", "regions_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Region layer file to check and describe.")  # fmt: skip
@click.pass_context
def regions_cmd(ctx, regions_path):
    """Validate a region layer and print its metadata and figures."""
    from .regions import REQUIRED_COLUMNS, default_layer

    settings = resolve_settings(ctx, regions_path, None, None, None)
    try:
        layer = default_layer(settings)
    except GridmapError as exc:
        raise FatalError(str(exc)) from None
    click.echo(f"layer: {layer.name}\ndata year: {layer.data_year}\nregions: {len(layer.frame)}")
    for source in layer.meta.get("sources", []):
        click.echo(f"source: {source}")
    cols = [c for c in REQUIRED_COLUMNS if c != "region_name"]
    click.echo(layer.figures[cols].to_string(index=False, max_rows=80))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.pass_context
def serve(ctx, host, port):
    """Run the development server (one thread). Production: gunicorn -c gunicorn.conf.py wsgi:app."""
    from .app import create_app

    try:
        app = create_app(_settings(ctx))
    except GridmapError as exc:
        raise FatalError(str(exc)) from None
    # threaded=False: GEOS prepared geometries must not be shared between threads
    app.run(host=host, port=port, threaded=False, use_reloader=False)


@main.command("map")
@click.argument("sites", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="HTML file to write; it works opened from disk with no network (assets inlined).")  # fmt: skip
@click.option("--metric", default="renewable_share", show_default=True,
              type=click.Choice(["renewable_share", "carbon_free_share", "co2_kg_per_mwh", "price_cents_per_kwh",
                                 "load_stress"]), help="Region metric shown first (the map can switch).")  # fmt: skip
@common_options
@click.pass_context
def map_cmd(ctx, sites, output, metric, regions_path, weights, nearest_km, default_pue, default_load_factor):
    """Score SITES and write a standalone HTML map of them (regions choropleth, clustered sites)."""
    from . import maps
    from .regions import default_layer
    from .scoring import score_sites
    from .sites import read_sites

    try:
        settings = resolve_settings(ctx, regions_path, nearest_km, default_pue, default_load_factor)
        _refuse_overwrite(sites, output)
        chosen = weights_option(weights)
        layer = default_layer(settings)
        result = score_sites(read_sites(sites, settings=settings), layer, weights=chosen, settings=settings)
        m = maps.build_map(layer, result, metric=metric, asset_base=None, max_sites=settings.map_max_sites)
        maps.write_html(m, output)
    except InputError as exc:
        _print_errors(exc.errors)
        raise FatalError(str(exc)) from None
    except GridmapError as exc:
        raise FatalError(str(exc)) from None
    click.echo(f"mapped {min(len(result.frame), settings.map_max_sites)} of {len(result.frame)} sites; wrote {output}")
    if len(result.frame) > settings.map_max_sites:
        click.echo(
            f"note: only the {settings.map_max_sites} best-ranked sites are drawn (GRIDMAP_MAP_MAX_SITES)", err=True
        )
    if result.errors:
        _print_errors(result.errors)
        ctx.exit(EXIT_ROW_ERRORS)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
