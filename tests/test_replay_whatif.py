"""``replay --what-if``: the same capture against changed manifests; the flows whose verdict
changes, with the deciding policy on each side, and exit status 1 when one breaks."""

from __future__ import annotations

import pandas as pd

from replay_traffic import BACKEND_FROM_FRONTEND, mixed_capture
from tracer.cli import main

# Same kind, namespace and name as the scenario's policy: it replaces it. The backend now
# admits role=batch (myns/other) and no longer role=frontend.
SWAPPED = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: backend-allow-frontend
  namespace: myns
spec:
  podSelector:
    matchLabels:
      role: backend
  policyTypes:
  - Ingress
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: batch
    ports:
    - protocol: TCP
      port: 6379
"""

# A new object: a Calico policy that also admits role=batch; nothing that was allowed breaks.
ADDED = """\
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata:
  name: backend-allow-batch
  namespace: myns
spec:
  selector: role == 'backend'
  types: [Ingress]
  ingress:
  - action: Allow
    protocol: TCP
    source:
      selector: role == 'batch'
    destination:
      ports: [6379]
"""


def in_process(capsys, *args: str) -> tuple[int, str, str]:
    """The real entry point in this process: exit status, stdout, stderr."""
    try:
        main(["replay", "--no-cache", "--engine", "reference", *args])
        status = 0
    except SystemExit as leaving:
        status = leaving.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_replaced_policy_lists_the_flows_it_breaks_and_fixes(tmp_path, capsys):
    cap = mixed_capture(tmp_path / "mixed.pcap")
    change = tmp_path / "swap.yaml"
    change.write_text(SWAPPED)
    status, out, _ = in_process(capsys, "-f", str(BACKEND_FROM_FRONTEND), str(cap), "--what-if",
                             str(change), "--out", str(tmp_path / "o"))
    assert status == 1                                # allowed flows become denied
    assert "What-if: 3 flow(s) change verdict" in out
    changes = pd.read_parquet(tmp_path / "o" / "what-if-changes.parquet").set_index("flow")
    assert sorted(changes.index) == [0, 1, 3]
    broken = changes.loc[0]                           # the frontend's connection
    assert broken["change"] == "allowed -> denied"
    assert broken["policy_before"] == "KubernetesNetworkPolicy myns/backend-allow-frontend"
    assert broken["reason_after"] == "default-deny"
    assert broken["policy_after"] == "end of tier default"
    fixed = changes.loc[1]                            # other -> backend
    assert fixed["change"] == "denied -> allowed"
    assert fixed["policy_after"] == "KubernetesNetworkPolicy myns/backend-allow-frontend"
    before = pd.read_parquet(tmp_path / "o" / "packets.parquet")
    after = pd.read_parquet(tmp_path / "o" / "what-if-packets.parquet")
    assert list(before["frame"]) == list(after["frame"])
    assert before.iloc[0]["verdict"] == "allowed" and after.iloc[0]["verdict"] == "dropped"


def test_an_added_policy_that_only_opens_exits_0(tmp_path, capsys):
    cap = mixed_capture(tmp_path / "mixed.pcap")
    change = tmp_path / "add.yaml"
    change.write_text(ADDED)
    status, _, _ = in_process(capsys, "-f", str(BACKEND_FROM_FRONTEND), str(cap),
                              "--what-if", str(change), "--out", str(tmp_path / "o"))
    assert status == 0
    changes = pd.read_parquet(tmp_path / "o" / "what-if-changes.parquet")
    assert list(changes["flow"]) == [1]
    assert changes.iloc[0]["change"] == "denied -> allowed"
    assert changes.iloc[0]["policy_after"] == "NetworkPolicy myns/backend-allow-batch"
    assert changes.iloc[0]["reason_before"] == "default-deny"


def test_a_bad_what_if_file_is_one_line(tmp_path, capsys):
    cap = mixed_capture(tmp_path / "mixed.pcap")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: NetworkPolicy\n  metadata: [\n")
    status, _, err = in_process(capsys, "-f", str(BACKEND_FROM_FRONTEND), str(cap),
                                "--what-if", str(bad))
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0]


def test_compare_with_a_whole_second_set_of_manifests(tmp_path, capsys):
    cap = mixed_capture(tmp_path / "mixed.pcap")
    proposed = tmp_path / "proposed"
    proposed.mkdir()
    (proposed / "cluster.yaml").write_text((BACKEND_FROM_FRONTEND / "cluster.yaml").read_text())
    (proposed / "policy.yaml").write_text(SWAPPED)
    status, out, _ = in_process(capsys, "-f", str(BACKEND_FROM_FRONTEND), str(cap),
                                "--compare-with", str(proposed), "--out", str(tmp_path / "o"))
    assert status == 1 and "What-if: 3 flow(s) change verdict" in out
    changes = pd.read_parquet(tmp_path / "o" / "what-if-changes.parquet")
    assert list(changes["change"]) == ["allowed -> denied", "denied -> allowed",
                                       "allowed -> denied"]
