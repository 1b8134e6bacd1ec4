"""Reading the dumps an operator holds (``--iptables-save``, ``--ipsets``) into rulesets per
node, and saying on stderr what reading them had to assume."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import click

from tracer.dataplane.ipsets import parse_ipsets
from tracer.dataplane.iptables_save import merge_rulesets, parse_ruleset
from tracer.dataplane.ir import Table
from tracer.errors import InputError, quote

TABLE_NAMES = tuple(t.value for t in Table)

partial_option = click.option(
    "--partial", is_flag=True,
    help="The dumps are excerpts (grep cali, a pasted fragment): chains used but not in the "
         "dump are assumed empty, said in the output, instead of refused.")
table_option = click.option(
    "--table", "table", type=click.Choice(TABLE_NAMES),
    help="The table of dumps without *table headers (iptables -t TABLE -S output); "
         "default filter. Per file: --iptables-save [NODE=]TABLE:FILE.")


def split_spec(spec: str, default_node: str) -> tuple[str, str, str | None]:
    """``[NODE=][TABLE:]FILE`` -> (node, path, table or None)."""
    node, sep, rest = spec.partition("=")
    # os.path.exists: a name too long to stat is just "not there" (Path.exists raises)
    if not sep or os.path.exists(spec):
        node, rest = default_node, spec
    table, colon, path = rest.partition(":")
    if colon and table in TABLE_NAMES and not os.path.exists(rest):
        return node, path, table
    return node, rest, None


def load_dumps(dumps, ipset_dumps, *, default_node: str, nodes: set[str],
               partial: bool = False, table: str | None = None):
    """node -> (ruleset, source) for ``build_dataplane``; several dumps of one node (one per
    table, as ``iptables -t nat -S`` gives them) merge into one ruleset."""
    ipsets_by_node: dict[str, dict] = {}
    for spec in ipset_dumps:
        node, path, _ = split_spec(spec, default_node)
        ipsets_by_node.setdefault(node, {}).update(parse_ipsets(read(path), filename=path))
    parts: dict[str, list] = {}
    paths: dict[str, list[str]] = {}
    for spec in dumps:
        node, path, file_table = split_spec(spec, default_node)
        if node not in nodes:
            raise InputError(f"no node {quote(node)} in the cluster", file=path,
                             obj="--iptables-save")
        sets = ipsets_by_node.get(node)
        parts.setdefault(node, []).append(parse_ruleset(
            read(path), filename=path, ipsets=sets, table=file_table or table, partial=partial))
        paths.setdefault(node, []).append(path)
    rulesets = {}
    for node, node_parts in parts.items():
        ruleset = (node_parts[0] if len(node_parts) == 1
                   else merge_rulesets(node_parts, filename=", ".join(paths[node])))
        rulesets[node] = (ruleset, f"iptables-save dump {', '.join(paths[node])}")
    return rulesets


def say_node_warnings(dataplane) -> None:
    """On stderr, what reading the dumps of the nodes a run reached had to assume."""
    for name in dataplane.nodes.built:
        for warning in dataplane.nodes[name].warnings:
            click.echo(f"warning: {name}: {warning}", err=True)


def read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror}", file=path) from None


diags_option = click.option(
    "--diags", "diags", multiple=True, metavar="[NODE=]BUNDLE",
    help="A calicoctl node diags bundle (.tar.gz or its folder) of NODE (default: the "
         "bundle's hostname); repeatable. Traces through the bundle's own rules, sets, routes "
         "and addresses; -f manifests become optional and add names, labels and policies.")


def load_diags(specs, base, *, partial: bool = False):
    """(cluster, build_dataplane keyword arguments) from ``--diags`` bundles, on top of the
    manifests' cluster ``base`` (None without -f)."""
    from tracer.diags.bundle import read_bundle
    from tracer.diags.nodes import load_node, rebuild

    nodes = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):
            name, path = "", spec
        bundle = read_bundle(path)
        name = name or bundle.hostname
        if not name:
            raise InputError("the bundle has no hostname file: give --diags NODE=BUNDLE",
                             file=path)
        if any(n.name == name for n in nodes):
            raise InputError(f"node {name} has two bundles", file=path, obj="--diags")
        nodes.append(load_node(name, bundle, partial=partial))
    rebuilt = rebuild(nodes, base)
    rulesets = {}
    for name, (ruleset, source) in rebuilt.rulesets.items():
        said = tuple(w.partition(": ")[2] for w in rebuilt.warnings if w.startswith(f"{name}: "))
        rulesets[name] = (replace(ruleset, warnings=ruleset.warnings + said), source)
    return rebuilt.cluster, {"rulesets": rulesets, "routing": rebuilt.routing,
                             "interfaces": rebuilt.interfaces}
