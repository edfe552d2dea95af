"""The ``gridmap`` command: score, regions (and serve, map). It calls the same core as the web app.

Exit status of ``gridmap score``: 0 all rows scored; 3 output written but some rows had errors
(listed on stderr and in the errors file); 2 nothing written (bad option or unreadable input).
"""

from __future__ import annotations

import sys
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
              help="Region layer (GeoParquet, GeoPackage, GeoJSON, Shapefile); default: embedded US states.")  # fmt: skip
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
        click.option("--weights", help="Score weights 'renewable=0.4,carbon=0.2,stress=0.3,price=0.1' or a .toml/.json file."),
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


@main.command()
@click.argument("sites", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output file; format from the extension: .geojson, .csv or .parquet.")  # fmt: skip
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Row errors CSV (default: OUTPUT stem + '.errors.csv', beside the output).")  # fmt: skip
@click.option("--top", default=5, show_default=True, help="How many top-ranked sites the summary lists.")
@common_options
@click.pass_context
def score(ctx, sites, output, errors_path, top, regions_path, weights, nearest_km, default_pue, default_load_factor):
    """Score the candidate sites in SITES (CSV, GeoJSON or GeoParquet) and write OUTPUT."""
    from . import outputs
    from .regions import default_layer
    from .scoring import score_sites
    from .sites import read_sites

    try:
        settings = resolve_settings(ctx, regions_path, nearest_km, default_pue, default_load_factor)
        fmt = outputs.format_for(output)
        _refuse_overwrite(sites, output)
        chosen = weights_option(weights)
        layer = default_layer(settings)
        batch = read_sites(sites, settings=settings)
        result = score_sites(batch, layer, weights=chosen, settings=settings)
        outputs.write_scored(result.frame, output, result.provenance, fmt=fmt)
        errors_path = errors_path or output.with_name(output.name.split(".")[0] + ".errors.csv")
        outputs.write_errors(result.errors, errors_path)
    except InputError as exc:
        _print_errors(exc.errors)
        raise FatalError(str(exc)) from None
    except GridmapError as exc:
        raise FatalError(str(exc)) from None
    _print_summary(result, layer, output, errors_path, top)
    if result.errors:
        _print_errors(result.errors)
        ctx.exit(EXIT_ROW_ERRORS)


def _refuse_overwrite(source: Path, output: Path) -> None:
    if output.exists() and output.resolve() == source.resolve():
        raise InputError(f"output {output} is the input file; choose another name")


def _print_errors(errors: list[RowError], limit: int = 50) -> None:
    for e in errors[:limit]:
        click.echo(f"error: row {e.row}, field {e.field or '-'}: {e.message}", err=True)
    if len(errors) > limit:
        click.echo(f"error: ... and {len(errors) - limit} more (see the errors file)", err=True)


def _print_summary(result, layer, output: Path, errors_path: Path, top: int) -> None:
    s = result.summary()
    frame = result.frame
    click.echo(f"layer: {layer.name} (data year {layer.data_year}); method {result.provenance['method_version']}")
    click.echo(f"scored {s['sites']} sites; {s['rows_with_errors']} rows with errors")
    click.echo("assignment: " + ", ".join(f"{k} {v}" for k, v in sorted(s["by_assignment"].items())))
    regions = sorted(s["by_region"].items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} {v}" for k, v in regions[:15])
    click.echo(f"sites per region: {shown}{' ...' if len(regions) > 15 else ''}")
    best = frame.dropna(subset=["score"]).sort_values(["rank", "site_id"]).head(top)
    if len(best):
        click.echo(f"top {len(best)}:")
    for r in best.itertuples():
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
