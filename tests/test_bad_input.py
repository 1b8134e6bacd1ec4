"""Bad manifests give one InputError line naming the file, the object and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer.errors import InputError
from tracer.model.loader import load_cluster

GOOD = """
apiVersion: v1
kind: Node
metadata:
  name: n1
  annotations: {projectcalico.org/IPv4Address: 10.0.0.1/24}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, image: nginx}]}
"""


def fails(tmp_path: Path, extra: str, *, base: str = GOOD, name: str = "bad.yaml") -> InputError:
    (tmp_path / name).write_text(base + ("---\n" + extra if extra else ""))
    with pytest.raises(InputError) as info:
        load_cluster([tmp_path])
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path / name) in message
    return info.value


def test_good_base_loads(tmp_path):
    (tmp_path / "ok.yaml").write_text(GOOD)
    assert "default/web" in load_cluster([tmp_path]).endpoints


def test_broken_yaml_names_line_and_column(tmp_path):
    err = fails(tmp_path, "", base="apiVersion: v1\nkind: Pod\nmetadata: {name: [x\n")
    assert "broken YAML at line" in err.problem and "column" in err.problem


def test_broken_json(tmp_path):
    err = fails(tmp_path, "", base='{"apiVersion": "v1",\n "kind": }', name="x.json")
    assert "broken JSON at line 2" in err.problem


def test_unknown_field_with_suggestion(tmp_path):
    err = fails(tmp_path, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: default}
spec: {podSelectr: {}}
""")
    assert err.obj == "NetworkPolicy default/np"
    assert "unknown field 'spec.podSelectr'" in err.problem and "podSelector" in err.problem


def test_unknown_nested_field_in_calico_rule(tmp_path):
    err = fails(tmp_path, """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec:
  ingress: [{action: Allow, source: {selectr: "a == 'b'"}}]
""")
    assert "spec.ingress[0].source.selectr" in err.problem


def test_misspelt_felix_field(tmp_path):
    err = fails(tmp_path, """
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {name: default}
spec: {wireguardEnbled: true}
""")
    assert "wireguardEnabled" in err.problem


def test_invalid_selector_names_field_and_column(tmp_path):
    err = fails(tmp_path, """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: default}
spec:
  selector: app == 'web'
  egress: [{action: Allow, destination: {selector: "role == 'db' &&& x"}}]
""")
    assert err.obj == "NetworkPolicy default/p"
    assert "spec.egress[0].destination.selector" in err.problem and "column" in err.problem


def test_named_port_no_pod_declares(tmp_path):
    err = fails(tmp_path, """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: default}
spec:
  podSelector: {}
  ingress: [{ports: [{port: metrics}]}]
""")
    assert "named port 'metrics'" in err.problem


def test_pod_on_missing_node(tmp_path):
    err = fails(tmp_path, """
apiVersion: v1
kind: Pod
metadata: {name: lost, namespace: default}
spec: {nodeName: n9, containers: [{name: c, image: nginx}]}
""")
    assert err.obj == "Pod default/lost" and "n9" in err.problem


def test_duplicate_object(tmp_path):
    err = fails(tmp_path, """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec: {nodeName: n1, containers: [{name: c, image: nginx}]}
""")
    assert "duplicate" in err.problem and err.obj == "Pod default/web"


@pytest.mark.parametrize("doc, needle", [
    ("""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: default}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]
""", "spec.ingress[0].from[0].ipBlock.cidr: bad CIDR"),
    ("""
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: p}
spec: {cidr: 10.1.0.1/16}
""", "spec.cidr: bad CIDR"),
    ("""
apiVersion: projectcalico.org/v3
kind: GlobalNetworkSet
metadata: {name: s}
spec: {nets: [not-a-net]}
""", "spec.nets[0]: bad CIDR"),
])
def test_bad_cidrs(tmp_path, doc, needle):
    assert needle in fails(tmp_path, doc).problem


@pytest.mark.parametrize("doc, needle", [
    ("""
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {enabled: true}}
""", "metadata.labels.enabled: value must be a string"),
    ("""
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: p, namespace: default}
spec: {tier: nosuch}
""", "tier 'nosuch' does not exist"),
    ("""
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: default}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 80, protocol: ICMP}]}]
""", "NetworkPolicy allows TCP, UDP or SCTP"),
    ("""
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: g}
spec: {ingress: [{action: Accept}]}
""", "spec.ingress[0].action"),
    ("""
apiVersion: v1
kind: Pod
metadata: {name: p2, namespace: default}
spec: {nodeName: n1, containers: [{name: c, image: nginx}]}
status: {podIP: 10.300.0.1}
""", "status.podIP: bad pod IP"),
    ("""
apiVersion: v1
kind: Pod
metadata: {name: p3}
spec: [1, 2]
""", "spec: expected a mapping"),
])
def test_other_bad_values(tmp_path, doc, needle):
    assert needle in fails(tmp_path, doc).problem


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_cluster([tmp_path / "missing.yaml"])


def test_named_port_declared_by_an_endpoint_slice_loads(tmp_path):
    """A port named only in an EndpointSlice is declared (it once crashed the check)."""
    (tmp_path / "ok.yaml").write_text(GOOD + """---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: metrics, protocol: TCP, port: 9090}]
endpoints: [{addresses: ["10.65.0.9"], conditions: {ready: true}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: np, namespace: default}
spec:
  podSelector: {}
  ingress: [{ports: [{port: metrics}]}]
""")
    cluster = load_cluster([tmp_path])
    assert len(cluster.policies) == 1
