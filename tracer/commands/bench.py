"""``calico-trace bench``: the compiled engine measured against the reference interpreter,
conntrack against a Python dict, compile time against iptables-restore."""

from __future__ import annotations

import json

import click


@click.command()
@click.option("--quick", is_flag=True, help="Smaller rulesets and fewer repeats (under a "
              "minute); the full suite goes to 10,000 policies and rules.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="json: one record per line (name, engine, value, unit, "
              "reference, reference_value, ratio, rules).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write the growth plot (rate against rule count) to this PNG file.")
def bench(quick: bool, output: str, plot_path: str | None) -> None:
    """Measure the engines side by side (medians of packets per CPU second)."""
    from rich.console import Console

    from tracer.bench.suite import Plan, run_suite
    from tracer.engine.warmup import kernels_cached, warm_up

    console = Console(stderr=True)
    if not kernels_cached():
        console.print("engine: numba is compiling the kernels (once; cached for later runs)…")
        console.print(f"engine: kernels compiled in {warm_up():.1f} s")
    plan = Plan.quick() if quick else Plan.full()
    with console.status("benchmarking…") as status:
        records = run_suite(plan, progress=lambda text: status.update(f"benchmarking: {text}"))
    if plot_path:
        from tracer.bench.plot import plot_growth
        plot_growth(records, plot_path)
    if output == "json":
        for record in records:
            click.echo(json.dumps(record.as_dict()))
        return
    from tracer.bench.report import render_table
    click.echo(render_table(records))
