"""`tulu human-eval` command group: serve the annotation page, create accounts, export answers, compute metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tulu_cli.cli._common import ConfigOpt, DryRunOpt, TuluTyper, print_json, print_resolved
from tulu_cli.options import resolve_options

app = TuluTyper(help="Serve a web page for pairwise human evaluation and analyse the results.")

DbOpt = Annotated[
    Optional[Path],
    typer.Option("--db", help="SQLite database of accounts and answers. Default: annotations.sqlite.", show_default=False),
]


@app.command("serve")
def serve_cmd(
    comparisons: Annotated[
        Optional[Path],
        typer.Option(
            "--comparisons",
            help='JSONL, one per line: {"id", "prompt", "completions": [{"model", "completion"}, {"model", "completion"}]}. Required.',
            show_default=False,
        ),
    ] = None,
    db: DbOpt = None,
    host: Annotated[
        Optional[str],
        typer.Option("--host", help="Address to listen on. Default: 127.0.0.1 (this machine only).", show_default=False),
    ] = None,
    port: Annotated[
        Optional[int], typer.Option("--port", help="Port; 0 picks a free one. Default: 5001.", show_default=False)
    ] = None,
    shuffle: Annotated[
        Optional[bool],
        typer.Option(
            "--shuffle/--no-shuffle",
            help="Give each annotator their own random order of instances. Default: --shuffle.",
            show_default=False,
        ),
    ] = None,
    secure_cookies: Annotated[
        Optional[bool],
        typer.Option(
            "--secure-cookies",
            help="Mark cookies Secure (set this behind a TLS reverse proxy; implied by --tls-cert). Default: off.",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        Optional[Path],
        typer.Option("--tls-cert", help="PEM certificate: serve HTTPS directly. Default: none.", show_default=False),
    ] = None,
    tls_key: Annotated[
        Optional[Path], typer.Option("--tls-key", help="PEM private key for --tls-cert. Default: none.", show_default=False)
    ] = None,
    session_hours: Annotated[
        Optional[float], typer.Option("--session-hours", help="Sign-in lifetime in hours. Default: 12.", show_default=False)
    ] = None,
    access_log: Annotated[
        Optional[bool], typer.Option("--access-log", help="Log every request to stderr. Default: off.", show_default=False)
    ] = None,
    guidelines: Annotated[
        Optional[Path],
        typer.Option(
            "--guidelines",
            help="Markdown file of annotation guidelines, shown on the Guidelines page. Default: built-in guidelines.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Serve the annotation page: annotators sign in and compare two models' responses to each prompt.

    Each annotator sees the instances in their own order, the two responses in random left/right order (the side is recorded), marks each acceptable or not, picks one of five preferences and may leave feedback. Every submission is committed to SQLite (WAL) before the page moves on; edits are new rows. Listens on 127.0.0.1 unless --host says otherwise; beyond loopback use --tls-cert/--tls-key or a TLS proxy with --secure-cookies.

    [bold]Example[/bold]

      tulu human-eval add-user alice --db study.sqlite
      tulu human-eval serve --comparisons pairs.jsonl --db study.sqlite --port 5001
    """
    from tulu_cli.errors import TuluError
    from tulu_cli.options.human_eval import ServeOptions

    if comparisons is None and config is None:
        raise TuluError("--comparisons: required (a JSONL file of prompts and two completions each)")
    opts = resolve_options(
        ServeOptions,
        config,
        dict(
            comparisons=comparisons, db=db, host=host, port=port, shuffle=shuffle, secure_cookies=secure_cookies,
            tls_cert=tls_cert, tls_key=tls_key, session_hours=session_hours, access_log=access_log,
            guidelines=guidelines,
        ),
    )  # fmt: skip
    if dry_run:
        from tulu_cli.human_eval.server import check_serve

        check_serve(opts)
        print_resolved(opts)
        return
    from tulu_cli.human_eval import serve

    serve(opts)


@app.command("add-user")
def add_user_cmd(
    name: Annotated[str, typer.Argument(help="Annotator's user name (letters, digits, . _ @ -).", show_default=False)],
    db: DbOpt = None,
    reset: Annotated[
        Optional[bool],
        typer.Option(
            "--reset", help="Issue a new password for an existing user (signs them out). Default: off.", show_default=False
        ),
    ] = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Create an annotator account and print its password once (only a salted scrypt hash is stored).

    There is no default account; the server refuses everyone until you add one.

    [bold]Example[/bold]

      tulu human-eval add-user alice --db study.sqlite
      tulu human-eval add-user alice --db study.sqlite --reset
    """
    from tulu_cli.human_eval import store
    from tulu_cli.options.human_eval import AddUserOptions

    opts = resolve_options(AddUserOptions, config, dict(name=name, db=db, reset=reset))
    store.check_user_name(opts.name)
    if dry_run:
        store.check_db_path(opts.db, write=True, must_exist=opts.reset)
        print_resolved(opts)
        return
    from rich.console import Console

    created = not store.check_db_path(opts.db, write=True, must_exist=opts.reset)
    conn = store.open_db(opts.db, create=not opts.reset)
    try:
        password = store.add_user(conn, opts.name, reset=opts.reset)
    except BaseException:
        conn.close()
        if created:
            store.remove_db_files(opts.db)
        raise
    conn.close()
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"{'New password for' if opts.reset else 'Created'} annotator [bold]{opts.name}[/bold] in {opts.db}."
        " Password (shown once, give it to the annotator):"
    )
    typer.echo(password)


@app.command("export")
def export_cmd(
    db: DbOpt = None,
    format: Annotated[  # noqa: A002 - the flag is --format
        Optional[str],
        typer.Option("--format", "-f", help="jsonl or csv. Default: from --output's extension, else jsonl.", show_default=False),
    ] = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="File to write. Default: stdout.", show_default=False)
    ] = None,
    all_revisions: Annotated[
        Optional[bool],
        typer.Option(
            "--all-revisions",
            help="Every submission, not just each annotator's latest answer per instance. Default: off.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Export answers with the prompt, both completions, which model was shown on which side and the preference.

    [bold]preference[/bold] runs from -2 (model_1 clearly better) to +2 (model_2 clearly better); model_1 is the first entry of the comparison's completions. Only each annotator's latest answer per instance unless --all-revisions.

    [bold]Example[/bold]

      tulu human-eval export --db study.sqlite --format csv -o answers.csv
    """
    from tulu_cli.options.human_eval import ExportOptions

    opts = resolve_options(ExportOptions, config, dict(db=db, format=format, output=output, all_revisions=all_revisions))
    if dry_run:
        from tulu_cli.human_eval import store
        from tulu_cli.human_eval.analysis import check_export_output

        check_export_output(opts.output, opts.db)
        store.open_db_for_reading(opts.db).close()
        print_resolved(opts)
        return
    from tulu_cli.human_eval import export

    n = export(opts.db, opts.format, opts.output, all_revisions=opts.all_revisions)
    if opts.output is not None and str(opts.output) != "-":
        from rich.console import Console

        Console(stderr=True, highlight=False, soft_wrap=True).print(f"wrote {n} answers to {opts.output} ({opts.format})")


@app.command("metrics")
def metrics_cmd(
    db: DbOpt = None,
    json_output: Annotated[
        Optional[bool],
        typer.Option("--json", help="Print one JSON document instead of tables. Default: off.", show_default=False),
    ] = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
) -> None:
    """Acceptance rate per model, win/tie/loss per model pair and inter-annotator agreement.

    Uses each annotator's latest answer per instance. Agreement (raw pairwise agreement, Fleiss' kappa, mean pairwise Cohen's kappa) is computed on instances with two or more annotators, for acceptability and for the preference collapsed to 3 classes and on the full 5-point scale.

    [bold]Example[/bold]

      tulu human-eval metrics --db study.sqlite
      tulu human-eval metrics --db study.sqlite --json > metrics.json
    """
    from tulu_cli.options.human_eval import MetricsOptions

    opts = resolve_options(MetricsOptions, config, dict(db=db, json_output=json_output))
    if dry_run:
        from tulu_cli.human_eval import store

        store.open_db_for_reading(opts.db).close()
        print_resolved(opts)
        return
    from tulu_cli.human_eval.analysis import metrics_from_db, print_metrics

    m = metrics_from_db(opts.db)
    if opts.json_output:
        print_json(m)
    else:
        print_metrics(m)
