"""``calico-trace matrix`` through click's CliRunner: json, csv, text and bad input."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from tracer.cli import cli, main

MANIFESTS = """\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Node
metadata:
  name: node-1
  annotations: {projectcalico.org/IPv4Address: 10.0.0.1/24}
status:
  addresses: [{type: InternalIP, address: 10.0.0.1}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-1
  containers:
  - name: web
    image: nginx
    ports: [{name: http, containerPort: 8080, protocol: TCP}]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec:
  nodeName: node-1
  containers: [{name: client, image: alpine}]
---
apiVersion: v1
kind: Pod
metadata: {name: other, namespace: shop, labels: {app: other}}
spec:
  nodeName: node-1
  containers: [{name: other, image: alpine}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: client}}}]
    ports: [{port: http}]
"""


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "cluster.yaml"
    path.write_text(MANIFESTS)
    return str(path)


def run(*args: str):
    return CliRunner().invoke(cli, ["matrix", *args], catch_exceptions=False)


def test_json_lists_every_ordered_pair(manifest):
    result = run("-f", manifest, "--port", "8080", "--output", "json")
    assert result.exit_code == 0, result.output
    entries = json.loads(result.output)
    assert len(entries) == 9
    verdicts = {(e["from"], e["to"]): e["allowed"] for e in entries}
    assert verdicts[("shop/client", "shop/web")] is True
    assert verdicts[("shop/other", "shop/web")] is False
    assert verdicts[("shop/web", "shop/web")] is True
    assert verdicts[("shop/web", "shop/client")] is True
    assert {e["protocol"] for e in entries} == {"TCP"} and {e["port"] for e in entries} == {8080}


def test_named_port_only_admits_its_number(manifest):
    entries = json.loads(run("-f", manifest, "--port", "80", "-o", "json").output)
    verdicts = {(e["from"], e["to"]): e["allowed"] for e in entries}
    assert verdicts[("shop/client", "shop/web")] is False


def test_csv(manifest):
    result = run("-f", manifest, "--port", "8080", "-o", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 9
    assert rows[0].keys() == {"from", "to", "protocol", "port", "allowed"}
    denied = [(r["from"], r["to"]) for r in rows if r["allowed"] == "false"]
    assert denied == [("shop/other", "shop/web")]


def test_text_grid_and_ascii(manifest):
    result = run("-f", manifest, "--port", "8080")
    assert result.exit_code == 0
    assert "TCP port 8080" in result.output
    lines = result.output.splitlines()
    other_row = next(line for line in lines if "shop/other" in line)
    assert other_row.split()[-3:] == ["\u2713", "\u2713", "\u2717"]   # client, other, web
    ascii_out = run("-f", manifest, "--port", "8080", "--ascii").output
    assert ascii_out.isascii()
    other_row = next(line for line in ascii_out.splitlines() if "shop/other" in line)
    assert other_row.split()[-3:] == ["Y", "Y", "."]


def test_icmp_has_no_port(manifest):
    entries = json.loads(run("-f", manifest, "--protocol", "icmp", "-o", "json").output)
    assert {e["port"] for e in entries} == {None} and {e["protocol"] for e in entries} == {"ICMP"}
    # The policy only admits TCP on the named port: ICMP to web is denied even from client.
    verdicts = {(e["from"], e["to"]): e["allowed"] for e in entries}
    assert verdicts[("shop/client", "shop/web")] is False


def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["calico-trace", "matrix", "-f", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("calico-trace: error:") and len(err.strip().splitlines()) == 1


def test_bad_port_is_a_usage_error(manifest):
    result = CliRunner().invoke(cli, ["matrix", "-f", manifest, "--port", "70000"])
    assert result.exit_code == 2
