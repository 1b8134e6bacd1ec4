"""``calico-trace render``: one node's iptables tables (and ipsets) as felix programs them."""

from __future__ import annotations

import click

from tracer.commands.options import manifest_option

IPSET_SEPARATOR = "# ---- iptables-restore input follows (restore the ipsets above first) ----"


@click.command()
@manifest_option
@click.option("--node", required=True, help="Node whose dataplane to render.")
@click.option("--ipsets", "with_ipsets", is_flag=True,
              help="Print the `ipset save` text first (restore it before the tables).")
@click.option("--calico-version", default=None,
              help="Calico release whose felix to mimic (3.29-3.32; default: the manifests' "
                   "FelixConfiguration, else the newest).")
def render(paths: tuple[str, ...], node: str, with_ipsets: bool,
           calico_version: str | None) -> None:
    """Print NODE's raw/mangle/nat/filter tables in iptables-save format, loadable by
    iptables-restore as is, with felix's cali:<id> rule comments."""
    from tracer.dataplane.ipsets import format_ipsets
    from tracer.dataplane.iptables_save import format_ruleset
    from tracer.model.loader import load_cluster
    from tracer.policy.felix import render_node

    cluster = load_cluster(list(paths), calico_version=calico_version)
    ruleset = render_node(cluster, node, version=calico_version)
    if with_ipsets:
        click.echo(format_ipsets(ruleset.ipsets), nl=False)
        click.echo(IPSET_SEPARATOR)
    click.echo(format_ruleset(ruleset), nl=False)
