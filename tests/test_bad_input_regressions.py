"""The twelve tracebacks of issue #9 and its four broken promises, each through the real entry
point (``tracer.cli.main(argv)``, in-process): exit status 2 and one short line on stderr
naming the file, the object and the problem."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import fuzzing

SCENARIO = fuzzing.SCENARIOS / "backend-from-frontend"
PACKET = ["--from", "myns/frontend", "--to", "myns/backend", "--port", "6379"]


def fails(*argv: str) -> str:
    """Run the CLI; it must keep the promise and exit 2. The error line is returned."""
    outcome = fuzzing.run(fuzzing.cli_entry, [str(a) for a in argv])
    assert fuzzing.judge(outcome) is None, outcome.crash or outcome.stderr
    assert outcome.status == 2, outcome.stdout
    (line,) = [line for line in outcome.lines if line.startswith(fuzzing.ERROR_PREFIX)]
    assert len(line) <= 500
    return line


def bad_manifest(tmp_path: Path, text: str, name: str = "bad.yaml") -> tuple[str, Path]:
    path = tmp_path / name
    path.write_text(text)
    return fails("matrix", "-f", SCENARIO, "-f", path), path


# ------------------------------------------------------------------------ 1-8: manifests


@pytest.mark.parametrize("metadata", ["just-a-string", "[a, b]", "5"])
def test_1_metadata_not_a_mapping(tmp_path, metadata):
    line, path = bad_manifest(tmp_path, f"apiVersion: v1\nkind: Pod\nmetadata: {metadata}\n")
    assert str(path) in line and "Pod" in line and "document 1" in line
    assert "metadata: expected a mapping" in line


def test_2_no_api_version_and_metadata_not_a_mapping(tmp_path):
    line, path = bad_manifest(tmp_path, "kind: Pod\nmetadata: [x]\n---\nkind: Pod\n"
                                        "metadata: oops\n")
    assert str(path) in line and "document 1" in line and "without apiVersion/kind" in line


def test_3_list_with_items_not_a_list(tmp_path):
    line, path = bad_manifest(tmp_path, "apiVersion: v1\nkind: List\nitems: 5\n")
    assert str(path) in line and "document 1 (List)" in line and "items: expected a list" in line


def test_3b_list_items_that_are_not_objects_are_named_by_position(tmp_path):
    line, _ = bad_manifest(tmp_path, "apiVersion: v1\nkind: List\nitems: [{kind: X}, 7]\n")
    assert "document 1 items[0]" in line and "without apiVersion/kind" in line


@pytest.mark.parametrize("name, text", [
    ("deep.json", "[" * 5000 + "]" * 5000),
    ("deep2.json", '{"a":' * 200 + "1" + "}" * 200),
    ("deep.yaml", "- " * 3000 + "x\n"),
    ("deep2.yaml", "[" * 3000 + "]" * 3000),
    ("deep3.yaml", "".join(" " * i + f"k{i}:\n" for i in range(100)) + " " * 100 + "v: 1\n"),
    ("deep4.yaml", "a: " + "[" * 40 + "\n" + "- " * 30 + "]" * 40 + "\n"),
])
def test_4_deep_nesting(tmp_path, name, text):
    line, path = bad_manifest(tmp_path, text, name)
    assert str(path) in line and "nest" in line


@pytest.mark.parametrize("labels", ["{1: one}", "{null: x}", "{true: x}"])
def test_5_non_string_match_labels_key(tmp_path, labels):
    line, path = bad_manifest(tmp_path, f"""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: np, namespace: myns}}
spec: {{podSelector: {{matchLabels: {labels}}}}}
""")
    assert str(path) in line and "NetworkPolicy myns/np" in line
    assert "spec.podSelector.matchLabels" in line and "is not a string" in line


def test_6_node_name_as_a_list(tmp_path):
    line, path = bad_manifest(tmp_path, """
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: myns}
spec: {nodeName: [node-1], containers: [{name: c, image: x}]}
""")
    assert str(path) in line and "Pod myns/p" in line and "spec.nodeName: expected a name" in line


def test_7_null_container_port(tmp_path):
    line, path = bad_manifest(tmp_path, """
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: myns}
spec: {nodeName: node-1, containers: [{name: c, image: x, ports: [null]}]}
""")
    assert str(path) in line and "spec.containers[0].ports[0]: null list entry" in line


def test_8_service_selector_as_a_string(tmp_path):
    line, path = bad_manifest(tmp_path, """
apiVersion: v1
kind: Service
metadata: {name: s, namespace: myns}
spec: {selector: "role=backend", ports: [{port: 80}]}
""")
    assert str(path) in line and "Service myns/s" in line
    assert "spec.selector: expected a mapping" in line


# ------------------------------------------------------------------------ 9-10: dumps


def dump_with(tmp_path: Path, lines_of) -> list[str]:
    """``packet`` arguments using the scenario's rendered dump, changed by ``lines_of``."""
    node, tables, sets = fuzzing.rendered_node(
        [s.path for s in fuzzing.scenarios()].index(SCENARIO))
    (tmp_path / "tables").write_text("\n".join(lines_of(tables.splitlines())) + "\n")
    (tmp_path / "sets").write_text(sets)
    return ["packet", "-f", SCENARIO, *PACKET, "--iptables-save", f"{node}={tmp_path}/tables",
            "--ipsets", f"{node}={tmp_path}/sets"]


@pytest.mark.parametrize("loop", [False, True], ids=["chain", "loop"])
def test_9_a_thousand_jumps_deep(tmp_path, loop):
    argv = dump_with(tmp_path, lambda lines: fuzzing._jump_chain(lines, 1000, loop=loop))
    line = fails(*argv)
    assert f"{tmp_path}/tables: line " in line
    assert ("chain loop in table filter" if loop else "nest deeper than 64") in line


def test_9b_a_chain_within_the_limit_still_traces(tmp_path):
    argv = dump_with(tmp_path, lambda lines: fuzzing._jump_chain(lines, 20, loop=False))
    outcome = fuzzing.run(fuzzing.cli_entry, [str(a) for a in argv])
    assert outcome.status == 0, outcome.stderr


@pytest.mark.parametrize("target, needle", [
    ("-j SNAT --to-source 300.1.1.1", "bad IPv4 address '300.1.1.1'"),
    ("-j SNAT --to-source 10.0.0.1:0-99999", "port range"),
    ("-j SNAT --to-source 10.0.0.1-10.0.0.9", "address ranges are not modelled"),
    ("-j DNAT --to-destination 10.0.0.1:abc", "bad port range 'abc'"),
    ("-j DNAT --to-destination 10.0.0.1:80-90", "port ranges are not modelled"),
    ("-j MASQUERADE --to-ports x", "bad port range 'x'"),
    ("-j NFLOG --nflog-group 99999999", "--nflog-group"),
])
def test_10_nat_targets_are_checked_when_parsed(tmp_path, target, needle):
    def add_rule(lines):
        at = lines.index("*nat") + 1
        commit = lines.index("COMMIT", at)
        return lines[:commit] + [f"-A POSTROUTING {target}"] + lines[commit:]
    line = fails(*dump_with(tmp_path, add_rule))
    assert f"{tmp_path}/tables: line " in line and needle in line


# ------------------------------------------------------------------------ 11-12: --write-pcap


def test_11_write_pcap_into_a_missing_folder(tmp_path):
    target = tmp_path / "no" / "such" / "trace.pcap"
    line = fails("packet", "-f", SCENARIO, *PACKET, "--write-pcap", target)
    assert str(target) in line and "--write-pcap" in line and "does not exist" in line


def test_12_write_pcap_to_a_file_that_cannot_be_written():
    line = fails("packet", "-f", SCENARIO, *PACKET, "--write-pcap", "/proc/version")
    assert "/proc/version: --write-pcap: cannot write" in line


def test_12b_write_pcap_to_a_folder(tmp_path):
    line = fails("packet", "-f", SCENARIO, *PACKET, "--write-pcap", tmp_path)
    assert "is a directory" in line


# ------------------------------------------------------------------------ the four promises


def test_alias_bomb_is_refused_quickly_naming_the_file(tmp_path):
    started = time.perf_counter()
    line, path = bad_manifest(tmp_path, fuzzing.ALIAS_BOMB)
    assert time.perf_counter() - started < 10
    assert str(path) in line and "alias bomb" in line


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f"])
def test_control_character_is_one_line_with_its_place(tmp_path, char):
    line, path = bad_manifest(tmp_path, f"apiVersion: v1\nkind: Pod{char}\n")
    assert str(path) in line and "control character" in line and "line 2 column 10" in line
    assert line.isprintable()


def test_conntrack_checks_every_connection_before_running_any():
    outcome = fuzzing.run(fuzzing.cli_entry, [
        "conntrack", "-f", str(SCENARIO), "--connect", "myns/frontend,myns/backend,tcp/6379",
        "--connect", "myns/frontend,myns/backend,tcp/http"])
    assert outcome.status == 2 and outcome.stdout == ""
    assert outcome.lines == [f"{fuzzing.ERROR_PREFIX}--connect: "
                             "'myns/frontend,myns/backend,tcp/http': port 'http' is not a "
                             "number 1-65535"]


def test_conntrack_unknown_pod_in_a_later_connection_runs_nothing():
    outcome = fuzzing.run(fuzzing.cli_entry, [
        "conntrack", "-f", str(SCENARIO), "--connect", "myns/frontend,myns/backend,tcp/6379",
        "--connect", "myns/frontend,myns/nobody,tcp/80"])
    assert outcome.status == 2 and outcome.stdout == ""
    assert not any(line.startswith("# ") for line in outcome.lines)


def test_echoed_values_are_shortened_and_escaped(tmp_path):
    value = "x\x1b[31m" + "y" * 5000
    line, path = bad_manifest(tmp_path, f"""
apiVersion: v1
kind: Namespace
metadata: {{name: ns, labels: {{app: "{value.encode('unicode_escape').decode()}"}}}}
""")
    assert str(path) in line and "\\x1b" in line and "more characters" in line
    assert len(line) < 400 and line.isprintable()


def test_usage_errors_are_one_line():
    line = fails("packet", "-f", SCENARIO, "--frm", "x")
    assert line == f"{fuzzing.ERROR_PREFIX}calico-trace packet: No such option '--frm'. " \
                   "Did you mean '--from'?"
