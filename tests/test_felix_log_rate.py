"""logActionRateLimit / logActionRateLimitBurst: felix (v3.30.6+) puts ``-m limit --limit R
[--limit-burst B]`` before the match of every Log rule (rules/policy.go
CombineMatchAndActionsForProtoRule); checked against felix's policy_test.go of each release that
has the fields (excerpts in tests/data/felix_static_test), refused where felix has no field."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracer.cli import cli
from tracer.errors import InputError
from tracer.model.cluster import FelixConfig
from tracer.model.loader import load_cluster
from tracer.policy.felix.context import make_ctx
from tracer.policy.felix.names import render_for_hash
from tracer.policy.felix.parsed import ParsedRule
from tracer.policy.felix.policy_chains import proto_rule_to_rules

from felix_fixtures import DENY_INGRESS, cluster


@dataclasses.dataclass(frozen=True)
class FixedSet:
    set_id: str

DATA = Path(__file__).resolve().parent / "data" / "felix_static_test"
SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
RELEASES = {"3.30": "v3.30.7", "3.31": "v3.31.7", "3.32": "v3.32.1"}

# The ruleTestData entries of the excerpt, as our parsed rules.
RULES = {"Empty rule": ParsedRule(action="log"),
         "Protocol name": ParsedRule(action="log", protocol="tcp"),
         "Protocol num": ParsedRule(action="log", protocol=8),
         "Source net": ParsedRule(action="log", src_nets=("10.0.0.0/16",)),
         "Source ports": ParsedRule(action="log", src_ports=((10, 12),)),
         "Source IP set": ParsedRule(action="log", src_sets=(FixedSet("ipsetid1"),))}


def felix_case(tag: str):
    """(rate, burst, prefix, {entry name: expected match}) from felix's test."""
    text = (DATA / f"log-rate-{tag}.go.txt").read_text()
    entries = dict(re.findall(r'Entry\("([^"]+)", 4,.*?"([^"]*)"\),', text, re.S))
    test = text.split('"Log rules should be correctly rendered with rate limits"', 1)[1]
    rate = re.search(r'LogActionRateLimit = "([^"]+)"', test).group(1)
    burst = int(re.search(r"LogActionRateLimitBurst = (\d+)", test).group(1))
    prefix = re.search(r'LogPrefix = "([^"]+)"', test).group(1)
    # What felix asserts: the entry's match and these limit fragments, one rule.
    assert 'fmt.Sprintf("-m limit --limit %s"' in test
    assert 'fmt.Sprintf("-m limit --limit %s --limit-burst %d"' in test
    assert "Expect(len(rules)).To(Equal(1))" in test
    return rate, burst, prefix, entries


@pytest.mark.parametrize("version", sorted(RELEASES))
def test_log_rules_equal_felix_policy_test(version):
    rate, burst, prefix, entries = felix_case(RELEASES[version])
    assert set(RULES) <= set(entries)
    for burst_set, limit in ((0, f"-m limit --limit {rate}"),
                             (burst, f"-m limit --limit {rate} --limit-burst {burst}")):
        felix = dataclasses.replace(FelixConfig(), log_prefix=prefix,
                                    log_action_rate_limit=rate,
                                    log_action_rate_limit_burst=burst_set)
        ctx = make_ctx(cluster(felix=felix), "node1", version)
        for name, rule in RULES.items():
            rules = proto_rule_to_rules(ctx, rule, DENY_INGRESS)
            assert len(rules) == 1
            line = render_for_hash("x", rules[0]).replace("-A x HASH ", "")
            # Combine(logMatch, match): the limit, then the rule's match, then LOG.
            expected = " ".join(p for p in (limit, entries[name]) if p)
            assert line == f'{expected} --jump LOG --log-prefix "{prefix}: " --log-level 5'


def test_without_the_field_log_rules_have_no_limit():
    ctx = make_ctx(cluster(), "node1", "3.32")
    rules = proto_rule_to_rules(ctx, RULES["Protocol name"], DENY_INGRESS)
    assert "limit" not in render_for_hash("x", rules[0])


LOG_POLICY = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: log-everything}
spec:
  order: 1
  selector: all()
  types: [Ingress]
  ingress:
  - action: Log
    protocol: TCP
"""


def scenario(tmp_path: Path, felix_spec: str) -> Path:
    root = tmp_path / "c"
    shutil.copytree(SCENARIOS / "backend-from-frontend", root)
    (root / "scenario.yaml").unlink(missing_ok=True)
    (root / "log.yaml").write_text(LOG_POLICY + f"""---
apiVersion: projectcalico.org/v3
kind: FelixConfiguration
metadata: {{name: default}}
spec: {{{felix_spec}}}
""")
    return root


def test_rendered_and_traced_with_felix_default_burst(tmp_path):
    """Only the rate set: felix renders its default burst (5), which iptables-save leaves out
    as the kernel's default, and prints the rate as libxt_limit does (10/second -> 10/sec);
    the trace passes the Log rule (one packet never exceeds a rate) and the verdict is the
    same as without a limit."""
    root = scenario(tmp_path, "logActionRateLimit: 10/second")
    out = CliRunner().invoke(cli, ["render", "-f", str(root), "--node", "node-1"])
    assert out.exit_code == 0, out.output
    logs = [line for line in out.stdout.splitlines() if "-j LOG" in line]
    assert logs and all("-m limit --limit 10/sec -j LOG" in line for line in logs)
    plain = scenario(tmp_path / "plain", "logPrefix: calico-packet")
    verdicts = []
    for source in (root, plain):
        result = CliRunner().invoke(cli, [
            "packet", "--no-cache", "-f", str(source), "--from", "myns/frontend",
            "--to", "myns/backend", "--port", "6379", "--output", "json"])
        assert result.exit_code == 0, result.output
        verdicts.append(json.loads(result.stdout)["verdict"])
        if source is root:
            assert "--limit 10/sec" in result.stdout     # the Log rule is on the path
    assert verdicts[0] == verdicts[1]


@pytest.mark.parametrize("version,field", [
    ("3.29", "logActionRateLimit"), ("3.29", "logActionRateLimitBurst"),
    ("3.30.5", "logActionRateLimit"),
])
def test_refused_by_releases_without_the_field(tmp_path, version, field):
    value = "10/second" if field == "logActionRateLimit" else "3"
    root = scenario(tmp_path, f"{field}: {value}")
    with pytest.raises(InputError) as err:
        load_cluster([root], calico_version=version)
    assert f"spec.{field}: felix v{version} has no such field (added in v3.30.6)" in \
        str(err.value)


def test_accepted_from_v3306_and_rate_checked(tmp_path):
    felix = load_cluster([scenario(tmp_path / "a", "logActionRateLimit: 3/hour, "
                                   "logActionRateLimitBurst: 0")], calico_version="3.30.6").felix
    assert (felix.log_action_rate_limit, felix.log_action_rate_limit_burst) == ("3/hour", 0)
    with pytest.raises(InputError, match=r"spec.logActionRateLimit: invalid log rate limit "
                                         r"'10/week'"):
        load_cluster([scenario(tmp_path / "b", "logActionRateLimit: 10/week")])
    with pytest.raises(InputError, match=r"spec.logActionRateLimitBurst: 10000 outside"):
        load_cluster([scenario(tmp_path / "c", "logActionRateLimitBurst: 10000")])
