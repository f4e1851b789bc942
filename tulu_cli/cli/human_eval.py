"""`tulu human-eval` command group: serve the annotation page, create accounts, export answers, compute metrics."""

from __future__ import annotations

import typer

from tulu_cli.cli._common import TuluTyper, print_json, print_resolved
from tulu_cli.cli._schema import Call, add_command
from tulu_cli.options.human_eval import AddUserOptions, ExportOptions, MetricsOptions, ServeOptions

def serve_cmd(call: Call) -> None:
    """Serve the annotation page: annotators sign in and compare two models' responses to each prompt.

    Each annotator sees the instances in their own order, the two responses in random left/right order (the side is recorded), marks each acceptable or not, picks one of five preferences and may leave feedback. Every submission is committed to SQLite (WAL) before the page moves on; edits are new rows. Listens on 127.0.0.1 unless --host says otherwise; beyond loopback use --tls-cert/--tls-key or a TLS proxy with --secure-cookies.

    [bold]Example[/bold]

      tulu human-eval add-user alice --db study.sqlite
      tulu human-eval serve --comparisons pairs.jsonl --db study.sqlite --port 5001
    """
    from tulu_cli.errors import TuluError

    if call.flags["comparisons"] is None and call.config is None:
        raise TuluError("--comparisons: required (a JSONL file of prompts and two completions each)")
    opts = call.options()
    if call.dry_run:
        from tulu_cli.human_eval.server import check_serve

        check_serve(opts)
        print_resolved(opts)
        return
    from tulu_cli.human_eval import serve

    serve(opts)


def add_user_cmd(call: Call) -> None:
    """Create an annotator account and print its password once (only a salted scrypt hash is stored).

    There is no default account; the server refuses everyone until you add one.

    [bold]Example[/bold]

      tulu human-eval add-user alice --db study.sqlite
      tulu human-eval add-user alice --db study.sqlite --reset
    """
    from tulu_cli.human_eval import store

    opts = call.options()
    store.check_user_name(opts.name)
    if call.dry_run:
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


def export_cmd(call: Call) -> None:
    """Export answers with the prompt, both completions, which model was shown on which side and the preference.

    [bold]preference[/bold] runs from -2 (model_1 clearly better) to +2 (model_2 clearly better); model_1 is the first entry of the comparison's completions. Only each annotator's latest answer per instance unless --all-revisions.

    [bold]Example[/bold]

      tulu human-eval export --db study.sqlite --format csv -o answers.csv
    """
    opts = call.options()
    if call.dry_run:
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


def metrics_cmd(call: Call) -> None:
    """Acceptance rate per model, win/tie/loss per model pair and inter-annotator agreement.

    Uses each annotator's latest answer per instance. Agreement (raw pairwise agreement, Fleiss' kappa, mean pairwise Cohen's kappa) is computed on instances with two or more annotators, for acceptability and for the preference collapsed to 3 classes and on the full 5-point scale.

    [bold]Example[/bold]

      tulu human-eval metrics --db study.sqlite
      tulu human-eval metrics --db study.sqlite --json > metrics.json
    """
    opts = call.options()
    if call.dry_run:
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


app = TuluTyper(help="Serve a web page for pairwise human evaluation and analyse the results.")
add_command(app, "serve", ServeOptions, serve_cmd)
add_command(app, "add-user", AddUserOptions, add_user_cmd)
add_command(app, "export", ExportOptions, export_cmd)
add_command(app, "metrics", MetricsOptions, metrics_cmd)
