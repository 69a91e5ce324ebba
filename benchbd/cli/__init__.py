"""The `benchbd` command: one module per sub-command, each a thin layer over a library call."""

from __future__ import annotations

import typer

from benchbd.cli import list_cmd, plot_cmd, run_cmd, show_cmd, sweep_cmd, table_cmd

app = typer.Typer(
    name="benchbd",
    help="Benchmark backdoor attacks and defenses on CLIP-style models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run_cmd.run)
app.command("sweep")(sweep_cmd.sweep_cmd)
app.command("list")(list_cmd.list_plugins)
app.command("table")(table_cmd.table)
app.command("plot")(plot_cmd.plot)
app.command("show")(show_cmd.show)


def main() -> None:
    app()
