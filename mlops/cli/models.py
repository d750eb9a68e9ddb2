"""``mlops models ...``: register, compile, import-mlflow, list, show, promote, alias, tag,
search."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from mlops.cli.deploy import materialise_served
from mlops.cli.output import (
    console,
    err_console,
    import_fixes,
    import_table,
    models_table,
    open_registry,
    print_json,
    versions_table,
)
from mlops.errors import CompileRefused, MlopsError, SignatureError

models_app = typer.Typer(no_args_is_help=True, help="Registered models and their versions.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


_TEXT_KEYS = {"training_data", "git_commit", "parent_version", "mlflow_run_id", "description"}


def _parse_pairs(pairs: list[str], what: str, *, numbers: bool = True) -> dict[str, Any]:
    """KEY=VALUE pairs; with ``numbers`` a value that reads as a number becomes one
    (metadata -> metrics), except for keys that are always text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise MlopsError(f"{what} {pair!r} is not KEY=VALUE.", fix=f"Write {what} key=value.")
        out[key] = _number_or_text(value) if numbers and key not in _TEXT_KEYS else value
    return out


def _number_or_text(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def _read_example(path: Path) -> Any:
    return _read_frame(path, "input example", SignatureError)


@models_app.command("register")
def register(
    path: Annotated[str, typer.Argument(
        help="Model file (.skops .onnx .json .txt .pkl .joblib), MLflow model directory, "
             "or models:/NAME/VERSION (models:/NAME@ALIAS) on --tracking-uri.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Registered model name.")],
    version: Annotated[str | None, typer.Option(help="Explicit semantic version.")] = None,
    bump: Annotated[str, typer.Option(help="patch, minor or major when no --version.")] = "patch",
    metadata: Annotated[list[str] | None, typer.Option("--metadata", "-m",
                                                       help="KEY=VALUE, repeatable.")] = None,
    input_example: Annotated[Path | None, typer.Option(help="CSV/Parquet/JSON rows.")] = None,
    description: str = "",
    trust: Annotated[bool, typer.Option(help="Load an unsafe pickle anyway (audited).")] = False,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking server for models:/ URIs (default: MLFLOW_TRACKING_URI).")
    ] = None,
    compile_to: Annotated[str | None, typer.Option(
        "--compile", help="Also compile it (onnx), checked on the --input-example rows "
                          "(at least 20); refused, and nothing registered, if inexact.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a model file or an MLflow model as a new version."""
    meta = _parse_pairs(metadata or [], "--metadata")
    example = _read_example(input_example) if input_example else None
    try:
        mv = open_registry().register(name, path, version=version, bump=bump, metadata=meta,
                                      input_example=example, description=description,
                                      trust=trust, tracking_uri=tracking_uri,
                                      compile=compile_to)
    except CompileRefused as exc:
        _refused(exc)
    if as_json:
        print_json(mv.to_dict())
    else:
        console.print(f"registered [bold]{mv.model}[/] version [bold]{mv.version}[/] "
                      f"({mv.flavor}/{mv.format}, sha256 {mv.artifact_digest[:12]})")
        for runtime, record in mv.runtimes.items():
            console.print(f"compiled to {runtime}: {_runtime_summary(record)}")


def _refused(exc: CompileRefused) -> NoReturn:
    """A compile that failed its check is a failed check: exit code 1."""
    err_console.print(f"[bold red]refused:[/] {escape(exc.message)}", soft_wrap=True)
    if exc.fix:
        err_console.print(f"[bold]fix:[/] {escape(exc.fix)}", soft_wrap=True)
    raise typer.Exit(1)


@models_app.command("compile")
def compile_cmd(
    name: str, version: str,
    to: Annotated[str, typer.Option("--to", help="The runtime to compile to.")] = "onnx",
    data: Annotated[Path | None, typer.Option(
        help="Held-out rows (CSV/Parquet/JSON) with the model's input columns; checked "
             "together with the stored input example (at least 20 rows in all).")] = None,
    rtol: Annotated[float | None, typer.Option(
        help="Relative tolerance (default 1e-5 for float32 tree graphs, 1e-7 for float64).")
    ] = None,
    atol: Annotated[float | None, typer.Option(
        help="Absolute tolerance (default 1e-5 for float32 tree graphs, 1e-9 for float64).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile a version (scikit-learn, XGBoost, LightGBM) to ONNX and store it as an
    alternate runtime of the same version; the gateway then serves it.

    It is stored only when its labels are identical and its probabilities or values are
    within the tolerance on every checked row; otherwise exit code 1 and nothing stored.
    Approver for a version production serves or has served."""
    rows = _read_frame(data, "--data", SignatureError) if data is not None else None
    try:
        mv = open_registry().compile(name, version, to=to, data=rows, rtol=rtol, atol=atol)
    except CompileRefused as exc:
        _refused(exc)
    record = mv.runtimes[to]
    if as_json:
        print_json({"model": mv.model, "version": mv.version, "runtime": to, **record})
        return
    checked = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in record["checked"].items())
    console.print(f"compiled [bold]{mv.model}[/] {mv.version} to {to}: "
                  f"{_runtime_summary(record)}; checked: {checked}", soft_wrap=True)


@models_app.command("import-mlflow")
def import_mlflow_cmd(
    tracking_uri: Annotated[str | None, typer.Option(
        help="The MLflow tracking server (default: MLFLOW_TRACKING_URI).")] = None,
    names: Annotated[list[str] | None, typer.Option(
        "--name", "-n", help="Registered model to import (repeatable; default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import every version of MLflow registered models, with stages, aliases, tags, run
    metrics, descriptions and run ids. Re-running imports only new versions.

    Exit code 1 when a version (or its stage) was refused."""
    from mlops.registry.mlflow_import import import_mlflow

    report = import_mlflow(open_registry(), tracking_uri, names)
    if as_json:
        print_json(report.to_dict())
    else:
        console.print(import_table(report))
        for line in import_fixes(report):
            console.print(line, soft_wrap=True)
        console.print(f"{len(report.imported)} imported, {len(report.skipped)} skipped, "
                      f"{len(report.refused)} refused")
    if not report.ok:
        raise typer.Exit(1)


@models_app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """List registered models."""
    models = open_registry().list_models()
    if as_json:
        print_json([m.to_dict() for m in models])
    else:
        console.print(models_table(models))


@models_app.command("show")
def show(name: str, version: Annotated[str | None, typer.Argument()] = None,
         as_json: JsonOpt = False) -> None:
    """Show a model's versions, or one version (number, stage, alias or 'latest')."""
    registry = open_registry()
    if version is None:
        versions = registry.list_versions(name)
        if as_json:
            print_json({"model": registry.get_model(name).to_dict(),
                        "versions": [v.to_dict() for v in versions]})
        else:
            console.print(versions_table(versions, f"{name}: versions"))
        return
    mv = registry.get_version(name, version)
    if as_json:
        print_json(mv.to_dict())
        return
    console.print(versions_table([mv], f"{name} {mv.version}"))
    if mv.signature:
        cols = ", ".join(f"{c.name}:{c.dtype}" for c in mv.signature.inputs)
        outs = ", ".join(f"{c.name}:{c.dtype}" for c in mv.signature.outputs)
        console.print(f"signature: ({cols}) -> ({outs})")
    lineage = mv.lineage.to_dict()
    if lineage:
        console.print("lineage: " + ", ".join(f"{k}={v}" for k, v in lineage.items()))
    for runtime, record in sorted(mv.runtimes.items()):
        console.print(f"runtime {runtime}: {_runtime_summary(record)}", soft_wrap=True)


@models_app.command("promote")
def promote(name: str, version: str, stage: str,
            keep_existing: Annotated[bool, typer.Option(
                help="Do not archive the current Production version.")] = False,
            reason: str = "",
            override: Annotated[str | None, typer.Option(
                help="Skip the promotion policy for Staging/Production (approver); the reason "
                     "is recorded in the audit log.")] = None) -> None:
    """Move a version to a stage (None, Staging, Production, Archived).

    Staging and Production are what environments serve by: the promotion gate applies."""
    mv = open_registry().promote(name, version, stage, archive_existing=not keep_existing,
                                 reason=reason, override=override)
    console.print(f"{mv.model} {mv.version} -> {mv.stage}")
    materialise_served()


@models_app.command("alias")
def alias(name: str, alias_name: Annotated[str, typer.Argument(metavar="ALIAS")],
          version: Annotated[str | None, typer.Argument()] = None,
          delete: Annotated[bool, typer.Option("--delete", help="Remove the alias.")] = False
          ) -> None:
    """Point an alias (champion, challenger, ...) at a version, or --delete it."""
    registry = open_registry()
    if delete:
        registry.delete_alias(name, alias_name)
        console.print(f"{name}: alias {alias_name} removed")
        return
    if version is None:
        raise MlopsError("Name the version the alias should point to.",
                         fix=f"mlops models alias {name} {alias_name} VERSION")
    mv = registry.set_alias(name, alias_name, version)
    console.print(f"{name}: {alias_name} -> {mv.version}")


@models_app.command("tag")
def tag(name: str, pairs: Annotated[list[str], typer.Argument(help="KEY=VALUE ...")],
        version: Annotated[str | None, typer.Option(help="Tag this version, not the model.")
                           ] = None,
        delete: Annotated[bool, typer.Option("--delete", help="Remove the KEYs.")] = False
        ) -> None:
    """Set (or --delete) tags on a model or one of its versions."""
    registry = open_registry()
    if delete:
        for key in pairs:
            registry.delete_tag(name, key.partition("=")[0], version)
        console.print(f"removed {len(pairs)} tag(s)")
        return
    for key, value in _parse_pairs(pairs, "tag", numbers=False).items():
        registry.set_tag(name, key, str(value), version)
    console.print(f"set {len(pairs)} tag(s)")


@models_app.command("search")
def search(query: Annotated[str, typer.Argument(
               help="e.g. \"accuracy > 0.9 and stage = production and tags.team = risk\"")] = "",
           limit: Annotated[int, typer.Option(min=1, max=100_000, help="Most versions.")] = 100,
           as_json: JsonOpt = False) -> None:
    """Find versions by name, tag, stage, alias and metric filters."""
    versions = open_registry().search(query, limit=limit)
    if as_json:
        print_json([v.to_dict() for v in versions])
    else:
        console.print(versions_table(versions, f"search: {query or '(all)'}"))


def _read_frame(*args: Any) -> Any:
    from mlops._tables import read_frame

    return read_frame(*args)


def _runtime_summary(record: Any) -> str:
    from mlops.registry.compile import runtime_summary

    return runtime_summary(record)
