"""The input forms operators hold (issue #15): ``iptables -S`` per table, ``iptables-save -c``
with counters, nft warning headers and CRLF, ``ipset list``, fragments with ``--partial``,
``-m ipvs``; and every gap a dump leaves said as a warning and a JSON assumption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli
from tracer.dataplane.interpreter import PacketView, run_hook
from tracer.dataplane.ipsets import parse_ipsets
from tracer.dataplane.iptables_save import (format_rule, merge_rulesets, parse_rule,
                                            parse_ruleset)
from tracer.dataplane.ir import IpvsMatch, Table
from tracer.errors import InputError

DATA = Path(__file__).resolve().parent / "data"
REAL = DATA / "realnode"
SAVE = (DATA / "felix-node.iptables-save").read_text()
SETS = parse_ipsets((DATA / "felix-node.ipset").read_text())


def same_tables(a, b) -> None:
    assert set(a.tables) == set(b.tables)
    for table in a.tables:
        assert a.tables[table] == b.tables[table], table


def test_iptables_S_per_table_reads_as_the_save_dump():
    reference = parse_ruleset(SAVE, ipsets=SETS)
    parts = [parse_ruleset((REAL / f"node-a.{t}.S").read_text(), filename=f"{t}.S",
                           table=t, ipsets=SETS) for t in ("raw", "mangle", "nat", "filter")]
    merged = merge_rulesets(parts)
    same_tables(merged, reference)
    assert merged.warnings == ()          # every table named, every chain declared by -N/-P


def test_iptables_save_c_with_counters_nft_warning_and_crlf():
    text = (REAL / "node-a.iptables-save-c").read_bytes().decode()
    assert "\r\n" in text and text.startswith("# Warning: iptables-legacy")
    ruleset = parse_ruleset(text, ipsets=SETS)
    same_tables(ruleset, parse_ruleset(SAVE, ipsets=SETS))


def test_ipset_list_reads_as_ipset_save():
    listed = parse_ipsets((REAL / "node-a.ipset-list").read_text())
    assert listed == SETS


def test_headerless_dump_defaults_to_filter_and_says_so():
    ruleset = parse_ruleset((REAL / "node-a.filter.S").read_text(), filename="f.S",
                            ipsets=SETS)
    assert set(ruleset.tables) == {Table.FILTER}
    assert any("no *table header: read as the filter table" in w for w in ruleset.warnings)


def test_table_given_for_a_dump_with_headers_is_refused():
    with pytest.raises(InputError, match="has its own"):
        parse_ruleset(SAVE, table="nat")


def test_fragment_without_partial_names_the_chain_and_suggests_partial():
    with pytest.raises(InputError) as err:
        parse_ruleset((REAL / "node-a.filter.fragment").read_text(), filename="frag",
                      table="filter")
    message = str(err.value)
    assert "cali-from-hep-forward" in message and "--partial" in message


def test_undeclared_user_chain_without_partial_suggests_partial():
    with pytest.raises(InputError, match="'cali-x' was not declared.*--partial"):
        parse_ruleset("-A cali-x -j ACCEPT\n", table="filter")


def test_fragment_with_partial_declares_absent_chains_as_placeholders():
    ruleset = parse_ruleset((REAL / "node-a.filter.fragment").read_text(), filename="frag",
                            table="filter", partial=True, ipsets=SETS)
    chains = ruleset.tables[Table.FILTER]
    absent = sorted(name for name, chain in chains.items() if chain.placeholder)
    assert absent == ["cali-cidr-block", "cali-from-hep-forward", "cali-pi-_q1MS9GFlo-itRgqjEtJ",
                      "cali-to-hep-forward"]
    assert chains["FORWARD"].policy == "ACCEPT"
    assert any("built-in chain filter FORWARD has no policy line" in w for w in ruleset.warnings)
    assert sum("is not in the dump" in w for w in ruleset.warnings) == 4


def test_builtin_chains_need_no_declaration():
    ruleset = parse_ruleset("*filter\n-A FORWARD -j DROP\nCOMMIT\n")
    assert ruleset.tables[Table.FILTER]["FORWARD"].rules[0].target.name == "DROP"


def _trace(*args, dumps):
    res = CliRunner().invoke(cli, ["packet", "-f", str(DATA / "real-node"), *dumps, *args,
                                   "--output", "json"], catch_exceptions=False)
    return res


def test_trace_through_a_fragment_says_the_absent_chain_in_hops_why_json_and_stderr():
    res = _trace("--from", "default/client", "--to", "default/web", "--port", "80",
                 dumps=["--iptables-save", f"node-a={REAL / 'node-a.filter.fragment'}",
                        "--partial", "--ipsets", f"node-a={DATA / 'felix-node.ipset'}"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    said = "chain cali-from-hep-forward is not in the dump: verdict assumes it returns"
    assert any(said in a for a in data["assumptions"])
    assert said in data["why"]
    hook = next(h for h in data["hops"] if h["stage"] == "hook" and h["hook"] == "FORWARD")
    assert said in hook["assumptions"]
    assert "table nat is not in the dump" in res.stderr
    assert "cali-from-hep-forward is not in the dump" in res.stderr


def test_trace_with_a_fragment_and_no_partial_is_a_one_line_error():
    res = CliRunner().invoke(cli, ["packet", "-f", str(DATA / "real-node"), "--iptables-save",
                                   f"node-a={REAL / 'node-a.filter.fragment'}", "--from",
                                   "default/client", "--to", "default/web"])
    assert res.exit_code != 0
    assert isinstance(res.exception, InputError)
    assert "--partial" in str(res.exception) and "cali-from-hep-forward" in str(res.exception)


def test_per_table_S_files_for_one_node_trace_like_the_save_dump():
    per_table = []
    for t in ("raw", "mangle", "nat", "filter"):
        per_table += ["--iptables-save", f"node-a={t}:{REAL / f'node-a.{t}.S'}"]
    sets = ["--ipsets", f"node-a={REAL / 'node-a.ipset-list'}"]
    args = ("--from", "default/client", "--to", "default/web-2", "--port", "80")
    a = _trace(*args, dumps=per_table + sets)
    b = _trace(*args, dumps=["--iptables-save", f"node-a={DATA / 'felix-node.iptables-save'}",
                             *sets])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja["verdict"] == jb["verdict"] == "allowed"
    rules = lambda j: [(h["chain"], h["rule"]) for h in j["hops"] if h["stage"] == "netfilter"]  # noqa: E731
    assert rules(ja) == rules(jb)


def test_missing_ipsets_are_said():
    res = _trace("--from", "default/client", "--to", "default/web", "--port", "80",
                 dumps=["--iptables-save", f"node-a={DATA / 'felix-node.iptables-save'}"])
    assert res.exit_code == 0
    assert "no ipsets given" in res.stderr
    assert any("no ipsets given" in a for a in json.loads(res.stdout)["assumptions"])


def test_interface_no_route_explains_is_said():
    res = _trace("--from", "default/client", "--to", "default/web", "--port", "80",
                 dumps=["--iptables-save", f"node-a={DATA / 'felix-node.iptables-save'}",
                        "--ipsets", f"node-a={DATA / 'felix-node.ipset'}"])
    assert "interface docker0 is named by rules but no route or address" in res.stderr


@pytest.mark.parametrize("line", [
    "-A FORWARD -m ipvs --ipvs -j ACCEPT",
    "-A FORWARD -m ipvs ! --ipvs -j ACCEPT",
    "-A FORWARD -m ipvs --ipvs --vproto 6 --vaddr 10.96.0.1/32 --vport 443 --vdir ORIGINAL "
    "--vmethod MASQ -j ACCEPT",
])
def test_ipvs_match_round_trips(line):
    chain, rule = parse_rule(line)
    assert isinstance(rule.matches[0], IpvsMatch)
    assert f"-A {chain} " + format_rule(chain, rule).split(" ", 2)[2] == line


@pytest.mark.parametrize("line, fires", [
    ("-A FORWARD -m ipvs --ipvs -j DROP", False),
    ("-A FORWARD -m ipvs ! --ipvs -j DROP", True),
    ("-A FORWARD -m ipvs ! --vaddr 10.96.0.1/32 -j DROP", False),
])
def test_ipvs_match_takes_the_packet_as_not_ipvs_and_says_so(line, fires):
    ruleset = parse_ruleset(f"*filter\n:FORWARD ACCEPT [0:0]\n{line}\nCOMMIT\n")
    view = PacketView(src=1, dst=2, protocol=6, sport=1, dport=2, icmp_type=None,
                      icmp_code=None, tcp_flags=2, iif="a", oif="b", mark=0, ct_state="NEW")
    result = run_hook(ruleset, Table.FILTER, "FORWARD", view, env=None)
    assert result.verdict == ("DROP" if fires else "ACCEPT")
    assert any("not an IPVS connection" in w for w in result.warnings)


def test_protocol_ipv4_spelling_is_ipip():
    _, rule = parse_rule("-A cali-fw-x -p ipv4 -j DROP")
    assert rule.matches[0].protocol == 4
    assert "-p ipencap" in format_rule("cali-fw-x", rule)


@pytest.mark.parametrize("line, problem", [
    ("-A POSTROUTING -j SNAT --to-source 10.0.0.300", "bad IPv4 address"),
    # one address and port per connection is what the tracer binds: ranges are refused
    ("-A POSTROUTING -j SNAT --to-source 10.0.0.1-10.0.0.9", "address ranges are not modelled"),
    ("-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:80-90",
     "port ranges are not modelled"),
    ("-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:0", "outside 1-65535"),
    ("-A PREROUTING -p tcp -j DNAT --to-destination 10.0.0.1:99999", "outside 1-65535"),
    ("-A POSTROUTING -j MASQUERADE --to-ports 0", "outside 1-65535"),
    ("-A OUTPUT -j NFLOG --nflog-group 70000", "expected a number 0-65535"),
])
def test_nat_ranges_are_checked(line, problem):
    with pytest.raises(InputError, match=problem):
        parse_rule(line)
