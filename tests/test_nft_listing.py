"""Reading felix's table back from the kernel's ``nft -a list ruleset``: the listing's normal
forms, refusals, and the round trip through the kernel for every bundled scenario."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from bundled import SCENARIOS
from tracer.cli import cli
from tracer.dataplane import ir
from tracer.errors import InputError
from tracer.model.loader import load_cluster
from tracer.nft.listing import parse_listing
from tracer.nft.model import VmapMatch
from tracer.nft.plug import with_nftables
from tracer.nft.text import format_nft
from tracer.nft.translate import render_nft
from tracer.nft.walk import CompiledTable, NftTables
from tracer.trace.assemble import build_dataplane
from tracer.trace.tracing import TraceRequest, trace_packet

LISTING = '''table ip kube-proxy { # handle 3
	chain x { # handle 1
	}
}
table ip calico { # handle 1
	set cali40s-abc { # handle 5
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/24,
			     192.168.0.1 }
	}
	set cali40n-port { # handle 6
		type ipv4_addr . inet_proto . inet_service
		elements = { 10.0.0.5 . tcp . 8080 }
	}
	map filter-cali-to-wl-dispatch { # handle 7
		type ifname : verdict
		elements = { "cali1" : goto filter-cali-tw-cali1,
			     "cali2" : goto filter-cali-tw-cali2 }
	}
	chain filter-FORWARD { # handle 2
		type filter hook forward priority filter; policy accept;
		counter packets 3 bytes 180 jump filter-cali-FORWARD comment "cali:a;" # handle 10
	}
	chain nat-OUTPUT { # handle 3
		type nat hook output priority 110; policy accept;
	}
	chain filter-cali-FORWARD { # handle 4
		oifname vmap @filter-cali-to-wl-dispatch comment "cali:b;" # handle 11
		meta mark & 0x00010000 == 0x00000000 counter packets 0 bytes 0 meta mark set meta mark & 0xfffcffff | 0x00010000 comment "cali:c;" # handle 12
		ip saddr @cali40s-abc tcp dport != { 53, 8080 } counter packets 0 bytes 0 meta mark set meta mark | 0x00010000 # handle 14
		ip daddr . meta l4proto . tcp dport @cali40n-port counter packets 0 bytes 0 accept # handle 15
		iifname "cali*" fib saddr . oif type != local fib daddr type local counter packets 0 bytes 0 drop # handle 16
		meta mark & 0x00080000 == 0x00080000 fib saddr . mark . iif oif 0 counter packets 0 bytes 0 drop # handle 17
		ct status != dnat icmp type echo-reply counter packets 0 bytes 0 masquerade fully-random # handle 18
		meta l4proto ipencap counter packets 0 bytes 0 notrack # handle 19
	}
}
'''


def test_listing_forms_read_back_as_the_renderer_types():
    table, handles, skipped = parse_listing(LISTING, "dump")
    assert skipped == ("table ip kube-proxy is not modelled (only felix's 'table ip calico' "
                       "is read)",)
    assert table.chains["nat-OUTPUT"].base.priority_value == 110
    assert table.sets["cali40s-abc"].ipset.members == ("10.0.0.0/24", "192.168.0.1")
    assert table.sets["cali40n-port"].ipset.members == ("10.0.0.5,tcp:8080",)
    assert table.maps["filter-cali-to-wl-dispatch"].lookup("cali2") == \
        ir.Goto("filter-cali-tw-cali2")
    rules = table.chains["filter-cali-FORWARD"].rules
    assert handles[("filter-cali-FORWARD", 0)] == 11 and handles[("filter-FORWARD", 0)] == 10
    assert rules[0].matches == (VmapMatch("out", "filter-cali-to-wl-dispatch"),)
    assert rules[1].matches == (ir.MarkMatch(0, 0x10000),)
    assert rules[1].target == ir.SetMark(0x10000, 0x30000)
    assert rules[1].comment == "cali:c;"
    assert rules[2].matches == (ir.SetMatch("cali40s-abc", ("src",)), ir.ProtocolMatch(6),
                                ir.PortMatch("dst", ((53, 53), (8080, 8080)), True))
    assert rules[2].target == ir.SetMark(0x10000, 0x10000)
    assert rules[3].matches == (ir.SetMatch("cali40n-port", ("dst", "dst")),)
    assert rules[4].matches == (
        ir.InterfaceMatch("in", "cali+"),
        ir.AddrTypeMatch(src_type="LOCAL", src_negated=True, limit_iface="out"),
        ir.AddrTypeMatch(dst_type="LOCAL"))
    assert rules[5].matches[1] == ir.RpfilterMatch(invert=True, validmark=True)
    assert rules[6].matches == (ir.ConntrackMatch(frozenset({"DNAT"}), True),
                                ir.ProtocolMatch(1), ir.IcmpMatch(0))
    assert rules[6].target == ir.Masquerade(random_fully=True)
    assert rules[7].matches == (ir.ProtocolMatch(4),) and rules[7].target == ir.NoTrack()


def test_unknown_expressions_and_missing_table_are_refused():
    bad = LISTING.replace("notrack # handle 19", "queue num 3 # handle 19")
    with pytest.raises(InputError) as err:
        parse_listing(bad, "dump")
    assert "filter-cali-FORWARD handle 19" in err.value.problem
    assert "queue" in err.value.problem
    with pytest.raises(InputError) as err:
        parse_listing("table ip filter {\n}\n", "dump")
    assert "table ip calico" in err.value.problem


def _expect(directory):
    meta = yaml.safe_load((directory / "scenario.yaml").read_text()) or {}
    return [c for c in meta.get("expect", []) if not str(c["to"]).startswith("svc/")]


@pytest.mark.root
def test_kernel_listing_traces_as_the_rendered_table():
    """render -> nft -f -> nft -a list ruleset -> read back: every bundled expectation takes
    the same path (chains, handles, verdicts) as through the rendered table."""
    from tracer.nft.sandbox import NftSandbox

    checked = 0
    with NftSandbox() as box:
        for directory in SCENARIOS:
            cluster = load_cluster([str(directory)])
            parsed = {}
            for node in cluster.nodes:
                box.load(format_nft(render_nft(cluster, node)))
                table, handles, _ = parse_listing(box.listing("-a"), f"{directory.name}/{node}")
                parsed[node] = CompiledTable(table, handles)
            rendered, _ = with_nftables(build_dataplane(cluster, version="3.32"), "3.32",
                                        "reference")
            dumped = build_dataplane(cluster, version="3.32").with_tables(
                NftTables(parsed.__getitem__))
            for case in _expect(directory):
                request = TraceRequest(str(case["from"]), str(case["to"]),
                                       protocol=str(case.get("protocol", "TCP")).lower(),
                                       port=case.get("port"))
                a, b = trace_packet(rendered, request), trace_packet(dumped, request)
                path = [(e.chain, e.kind, e.rule_number, e.effect, e.target_chain)
                        for _, e in a.netfilter_events()]
                assert (b.verdict, b.reason) == (a.verdict, a.reason), (directory.name, case)
                assert [(e.chain, e.kind, e.rule_number, e.effect, e.target_chain)
                        for _, e in b.netfilter_events()] == path, (directory.name, case)
                checked += 1
    assert checked > 40


@pytest.mark.root
def test_packet_through_a_node_listing(tmp_path):
    """``packet --nft-ruleset``: a real node's listing, edited (the tier's end drop turned into
    an accept), decides instead of the rendered table."""
    from tracer.nft.sandbox import NftSandbox

    scenario = next(p for p in SCENARIOS if p.name == "backend-from-frontend")
    cluster = load_cluster([str(scenario)])
    with NftSandbox() as box:
        box.load(format_nft(render_nft(cluster, "node-1")))
        listing = box.listing("-a")
    args = ["packet", "-f", str(scenario), "--from", "myns/other", "--to", "myns/backend",
            "--port", "6379", "--verbosity", "minimal"]
    dump = tmp_path / "node-1.nft"
    dump.write_text(listing)
    same = CliRunner().invoke(cli, [*args, "--nft-ruleset", str(dump)])
    assert same.exit_code == 0 and "dropped [default-deny]" in same.output, same.output
    edited = listing.replace("== 0x00000000 counter packets 0 bytes 0 drop comment "
                             '"cali:HzmvzE7pjl0uz-id;',
                             "== 0x00000000 counter packets 0 bytes 0 accept comment "
                             '"cali:HzmvzE7pjl0uz-id;')
    assert edited != listing
    dump.write_text(edited)
    opened = CliRunner().invoke(cli, [*args, "--nft-ruleset", f"node-1={dump}"])
    assert opened.exit_code == 0 and "allowed: delivered to pod myns/backend" in opened.output
