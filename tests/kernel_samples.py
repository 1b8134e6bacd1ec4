"""Hand-written, felix-shaped rulesets for exercising the kernel judge without the renderer.

The text follows calico-dataplane.md §1-§3 and §10 for Calico ≥ v3.30 with the default mark
mask (accept 0x10000, pass 0x20000, scratch0 0x80000; all felix bits 0x1b0000), insert
mode, no host endpoints, no IPIP, flow logs off: the raw/mangle/filter/nat hook chains,
the workload dispatch chains with their ``Unknown interface`` drop, ``cali-fw-*`` /
``cali-tw-*`` endpoint chains with tiers and the ``kns.<namespace>`` profile, and one
``cali-pi-*`` policy chain per ingress policy. Rules are written as ``iptables-save`` prints
them (``-j MARK --set-xmark``, ``-m multiport --dports``), each with a ``cali:<id>`` comment.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from tracer.kernel.topology import (VXLAN_DEVICE, NodeSpec, PodSpec, RouteSpec, TopologySpec,
                                    VxlanSpec)

ACCEPT_MARK = "0x10000/0x10000"
PASS_MASK = "0x20000"
SCRATCH0 = "0x80000/0x80000"
ALL_BITS = "0x1b0000"
ALL_BUT_ACCEPT = "0x1a0000"


@dataclass(frozen=True)
class SampleEndpoint:
    """A local workload: its ``cali…`` interface, namespace, and ingress policy.

    ``ingress`` is None (no policy: the profile allows), ``"deny-all"`` (a policy with no
    rules), or a TCP port the one policy allows.
    """

    interface: str
    namespace: str = "default"
    ingress: str | int | None = None


def rule_id(chain: str, index: int) -> str:
    """A stable 16-character ``cali:`` id (felix hashes its rules the same way in spirit)."""
    digest = hashlib.sha224(f"{chain}/{index}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:16]


def policy_chain(endpoint: SampleEndpoint) -> str:
    digest = hashlib.sha224(f"{endpoint.interface}/{endpoint.ingress}".encode()).digest()
    return "cali-pi-_" + base64.urlsafe_b64encode(digest).decode()[:19]


class _Table:
    def __init__(self, name: str, builtins: Sequence[str]) -> None:
        self.name = name
        self.builtins = list(builtins)
        self.chains: dict[str, list[str]] = {}
        self.hooks: list[str] = []

    def chain(self, name: str) -> list[str]:
        return self.chains.setdefault(name, [])

    def add(self, chain: str, spec: str, comment: str | None = None) -> None:
        """Append a felix rule: the ``cali:`` id comment goes before the other matches."""
        rules = self.chain(chain)
        protocol, rest = _split_protocol(spec)
        extra = f' -m comment --comment "{comment}"' if comment else ""
        rules.append(f'-A {chain}{protocol} -m comment --comment "cali:{rule_id(chain, len(rules))}"'
                     f"{extra} {rest}".rstrip())

    def hook(self, builtin: str, target: str) -> None:
        self.hooks.append(f'-A {builtin} -m comment --comment "cali:{rule_id(builtin, 0)}" '
                          f"-j {target}")

    def render(self) -> str:
        lines = [f"*{self.name}"]
        lines += [f":{name} ACCEPT [0:0]" for name in self.builtins]
        lines += [f":{name} - [0:0]" for name in sorted(self.chains)]
        lines += self.hooks
        for name in sorted(self.chains):
            lines += self.chains[name]
        lines.append("COMMIT")
        return "\n".join(lines)


def _split_protocol(spec: str) -> tuple[str, str]:
    """iptables prints ``-p`` before the comment match; keep that order."""
    if spec.startswith("-p "):
        proto, _, rest = spec[3:].partition(" ")
        return f" -p {proto}", rest
    return "", spec


def felix_iptables(endpoints: Iterable[SampleEndpoint], *, vxlan: bool = False) -> str:
    """The whole ``iptables-save`` text of one node."""
    endpoints = sorted(endpoints, key=lambda e: e.interface)
    tables = [_raw(vxlan), _mangle(), _filter(endpoints, vxlan), _nat()]
    return "\n".join(t.render() for t in tables) + "\n"


def felix_ipsets(pool_cidrs: Iterable[str], vxlan_hosts: Iterable[str] = ()) -> str:
    """``ipset save`` text for the sets the sample rules reference."""
    lines = []
    sets = {"cali40all-ipam-pools": list(pool_cidrs), "cali40masq-ipam-pools": list(pool_cidrs),
            "cali40all-vxlan-net": list(vxlan_hosts)}
    for name, members in sets.items():
        lines.append(f"create {name} hash:net family inet hashsize 1024 maxelem 1048576")
        lines += [f"add {name} {member}" for member in members]
    return "\n".join(lines) + "\n"


def _raw(vxlan: bool) -> _Table:
    raw = _Table("raw", ("PREROUTING", "OUTPUT"))
    raw.hook("PREROUTING", "cali-PREROUTING")
    raw.hook("OUTPUT", "cali-OUTPUT")
    for name in ("cali-rpf-skip", "cali-from-host-endpoint", "cali-to-host-endpoint"):
        raw.chain(name)
    pre = "cali-PREROUTING"
    raw.add(pre, f"-j MARK --set-xmark 0x0/{ALL_BITS}")
    if vxlan:
        raw.add(pre, "-p udp -m udp --dport 4789 -j NOTRACK")
    raw.add(pre, f"-i cali+ -j MARK --set-xmark {SCRATCH0}")
    raw.add(pre, f"-m mark --mark {SCRATCH0} -j cali-rpf-skip")
    raw.add(pre, f"-m mark --mark {SCRATCH0} -m rpfilter --validmark --invert -j DROP")
    raw.add(pre, "-m mark --mark 0x0/0x80000 -j cali-from-host-endpoint")
    raw.add(pre, f"-m mark --mark {ACCEPT_MARK} -j ACCEPT")
    out = "cali-OUTPUT"
    raw.add(out, f"-j MARK --set-xmark 0x0/{ALL_BITS}")
    raw.add(out, "-j cali-to-host-endpoint")
    if vxlan:
        raw.add(out, "-p udp -m udp --dport 4789 -j NOTRACK")
    raw.add(out, f"-m mark --mark {ACCEPT_MARK} -j ACCEPT")
    return raw


def _mangle() -> _Table:
    mangle = _Table("mangle", ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"))
    mangle.hook("PREROUTING", "cali-PREROUTING")
    mangle.hook("POSTROUTING", "cali-POSTROUTING")
    mangle.chain("cali-from-host-endpoint")
    mangle.chain("cali-to-host-endpoint")
    pre = "cali-PREROUTING"
    mangle.add(pre, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    mangle.add(pre, f"-m mark --mark {ACCEPT_MARK} -j ACCEPT")
    mangle.add(pre, "-j cali-from-host-endpoint")
    mangle.add(pre, f"-m mark --mark {ACCEPT_MARK} -j ACCEPT",
               "Host endpoint policy accepted packet.")
    post = "cali-POSTROUTING"
    mangle.add(post, f"-m mark --mark {ACCEPT_MARK} -j RETURN")
    mangle.add(post, f"-j MARK --set-xmark 0x0/{ALL_BITS}")
    mangle.add(post, "-m conntrack --ctstate DNAT -j cali-to-host-endpoint")
    mangle.add(post, f"-m mark --mark {ACCEPT_MARK} -j RETURN",
               "Host endpoint policy accepted packet.")
    return mangle


def _filter(endpoints: Sequence[SampleEndpoint], vxlan: bool) -> _Table:
    flt = _Table("filter", ("INPUT", "FORWARD", "OUTPUT"))
    flt.hook("INPUT", "cali-INPUT")
    flt.hook("FORWARD", "cali-FORWARD")
    flt.hook("OUTPUT", "cali-OUTPUT")
    for name in ("cali-from-hep-forward", "cali-to-hep-forward", "cali-cidr-block",
                 "cali-from-host-endpoint", "cali-to-host-endpoint"):
        flt.chain(name)
    _filter_input(flt, vxlan)
    _filter_output(flt, vxlan)
    fwd = "cali-FORWARD"
    flt.add(fwd, f"-j MARK --set-xmark 0x0/{ALL_BUT_ACCEPT}")
    flt.add(fwd, "-m mark --mark 0x0/0x10000 -j cali-from-hep-forward")
    flt.add(fwd, "-i cali+ -j cali-from-wl-dispatch")
    flt.add(fwd, "-o cali+ -j cali-to-wl-dispatch")
    flt.add(fwd, "-j cali-to-hep-forward")
    flt.add(fwd, "-j cali-cidr-block")
    _dispatch(flt, endpoints)
    for endpoint in endpoints:
        _from_endpoint(flt, endpoint)
        _to_endpoint(flt, endpoint)
    for namespace in sorted({e.namespace for e in endpoints}):
        flt.add(f"cali-pri-kns.{namespace}", f"-j MARK --set-xmark {ACCEPT_MARK}",
                f"Profile kns.{namespace} ingress")
        flt.add(f"cali-pro-kns.{namespace}", f"-j MARK --set-xmark {ACCEPT_MARK}",
                f"Profile kns.{namespace} egress")
    # felix always *appends* these two to FORWARD, after its inserted hook (§1.1).
    flt.hooks.insert(2, '-A FORWARD -m comment --comment "cali:S93hcgKJrXEqnTfs" -m comment '
                        '--comment "Policy explicitly accepted packet." '
                        f"-m mark --mark {ACCEPT_MARK} -j ACCEPT")
    flt.hooks.insert(3, '-A FORWARD -m comment --comment "cali:mp77cMpurHhyjLrM" '
                        f"-j MARK --set-xmark {ACCEPT_MARK}")
    return flt


def _filter_input(flt: _Table, vxlan: bool) -> None:
    inp = "cali-INPUT"
    if vxlan:
        flt.add(inp, "-p udp -m multiport --dports 4789 -m set --match-set cali40all-vxlan-net "
                     "src -m addrtype --dst-type LOCAL -j ACCEPT",
                "Allow IPv4 VXLAN packets from allowed hosts")
        flt.add(inp, "-p udp -m multiport --dports 4789 -m addrtype --dst-type LOCAL -j DROP",
                "Drop IPv4 VXLAN packets from non-allowed hosts")
    flt.add(inp, "-i cali+ -g cali-wl-to-host")
    flt.add(inp, f"-m mark --mark {ACCEPT_MARK} -j ACCEPT")
    flt.add(inp, f"-j MARK --set-xmark 0x0/{ALL_BITS}")
    flt.add(inp, "-j cali-from-host-endpoint")
    flt.add(inp, f"-m mark --mark {ACCEPT_MARK} -j ACCEPT", "Host endpoint policy accepted packet.")
    flt.add("cali-wl-to-host", "-j cali-from-wl-dispatch")
    flt.add("cali-wl-to-host", "-j ACCEPT", "Configured DefaultEndpointToHostAction")


def _filter_output(flt: _Table, vxlan: bool) -> None:
    out = "cali-OUTPUT"
    flt.add(out, f"-m mark --mark {ACCEPT_MARK} -j ACCEPT")
    flt.add(out, "-o cali+ -j RETURN")
    if vxlan:
        flt.add(out, "-p udp -m multiport --dports 4789 -m set --match-set cali40all-vxlan-net "
                     "dst -m addrtype --src-type LOCAL -j ACCEPT",
                "Allow IPv4 VXLAN packets to other allowed hosts")
    flt.add(out, f"-j MARK --set-xmark 0x0/{ALL_BITS}")
    flt.add(out, "-m conntrack ! --ctstate DNAT -j cali-to-host-endpoint")
    flt.add(out, f"-m mark --mark {ACCEPT_MARK} -j ACCEPT", "Host endpoint policy accepted packet.")


def _dispatch(flt: _Table, endpoints: Sequence[SampleEndpoint]) -> None:
    """One level, direct rules only (each endpoint alone in its bin is enough here)."""
    for endpoint in endpoints:
        flt.add("cali-from-wl-dispatch",
                f"-i {endpoint.interface} -g cali-fw-{endpoint.interface}")
        flt.add("cali-to-wl-dispatch", f"-o {endpoint.interface} -g cali-tw-{endpoint.interface}")
    flt.add("cali-from-wl-dispatch", "-j DROP", "Unknown interface")
    flt.add("cali-to-wl-dispatch", "-j DROP", "Unknown interface")


def _conntrack_head(flt: _Table, chain: str) -> None:
    flt.add(chain, "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    flt.add(chain, "-m conntrack --ctstate INVALID -j DROP")
    flt.add(chain, "-j MARK --set-xmark 0x0/0x30000")


def _from_endpoint(flt: _Table, endpoint: SampleEndpoint) -> None:
    chain = f"cali-fw-{endpoint.interface}"
    _conntrack_head(flt, chain)
    flt.add(chain, "-p udp -m multiport --dports 4789 -j DROP",
            "Drop VXLAN encapped packets originating in workloads")
    flt.add(chain, "-p 4 -j DROP", "Drop IPinIP encapped packets originating in workloads")
    flt.add(chain, f"-j cali-pro-kns.{endpoint.namespace}")
    flt.add(chain, f"-m mark --mark {ACCEPT_MARK} -j RETURN", "Return if profile accepted")
    flt.add(chain, "-j DROP", "Drop if no profiles matched")


def _to_endpoint(flt: _Table, endpoint: SampleEndpoint) -> None:
    chain = f"cali-tw-{endpoint.interface}"
    _conntrack_head(flt, chain)
    if endpoint.ingress is not None:
        policy = policy_chain(endpoint)
        flt.add(chain, f"-j MARK --set-xmark 0x0/{PASS_MASK}", "Start of tier default")
        flt.add(chain, f"-m mark --mark 0x0/{PASS_MASK} -j {policy}")
        flt.add(chain, f"-m mark --mark {ACCEPT_MARK} -j RETURN", "Return if policy accepted")
        flt.add(chain, f"-m mark --mark 0x0/{PASS_MASK} -j DROP",
                "End of tier default. Drop if no policies passed packet")
        _policy(flt, policy, endpoint)
    flt.add(chain, f"-j cali-pri-kns.{endpoint.namespace}")
    flt.add(chain, f"-m mark --mark {ACCEPT_MARK} -j RETURN", "Return if profile accepted")
    flt.add(chain, "-j DROP", "Drop if no profiles matched")


def _policy(flt: _Table, chain: str, endpoint: SampleEndpoint) -> None:
    name = f"KubernetesNetworkPolicy {endpoint.namespace}/sample-{endpoint.interface} ingress"
    if endpoint.ingress == "deny-all":
        # A policy without rules renders as a single comment-only rule (§10).
        flt.chain(chain).append(f'-A {chain} -m comment --comment "cali:{rule_id(chain, 0)}" '
                                f'-m comment --comment "{name}"')
        return
    flt.add(chain, f"-p tcp -m multiport --dports {int(endpoint.ingress)} "
                   f"-j MARK --set-xmark {ACCEPT_MARK}", name)


def _nat() -> _Table:
    nat = _Table("nat", ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"))
    nat.hook("PREROUTING", "cali-PREROUTING")
    nat.hook("OUTPUT", "cali-OUTPUT")
    nat.hook("POSTROUTING", "cali-POSTROUTING")
    nat.chain("cali-fip-dnat")
    nat.chain("cali-fip-snat")
    nat.add("cali-PREROUTING", "-j cali-fip-dnat")
    nat.add("cali-OUTPUT", "-j cali-fip-dnat")
    nat.add("cali-POSTROUTING", "-j cali-fip-snat")
    nat.add("cali-POSTROUTING", "-j cali-nat-outgoing")
    nat.add("cali-nat-outgoing", "-m set --match-set cali40masq-ipam-pools src -m set "
                                 "! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully")
    return nat


# -- ready-made topologies ------------------------------------------------------------------

POD_A, POD_B, POD_C = "calia7a3e029a7b", "cali68caf03a5f4", "cali12d4a3f2b81"
POOL = "10.65.0.0/16"


def one_node_topology(*, b_ingress: str | int | None = 80) -> TopologySpec:
    """Node ``node-1`` with pods ``default/client`` (10.65.0.2) and ``default/web``
    (10.65.0.3, ingress policy ``b_ingress``), and an external host at 172.18.0.1."""
    endpoints = [SampleEndpoint(POD_A), SampleEndpoint(POD_B, ingress=b_ingress)]
    node = NodeSpec("node-1", IPv4Interface("172.18.0.11/24"),
                    pods=(PodSpec("default/client", IPv4Address("10.65.0.2"), POD_A),
                          PodSpec("default/web", IPv4Address("10.65.0.3"), POD_B)),
                    iptables=felix_iptables(endpoints), ipsets=felix_ipsets([POOL]))
    return TopologySpec(nodes=(node,), underlay_gateway=IPv4Interface("172.18.0.1/24"))


def two_node_topology(*, vxlan: bool, b_ingress: str | int | None = 80) -> TopologySpec:
    """``default/client`` (10.65.0.2) on ``node-1`` and ``default/web`` (10.65.1.2, ingress
    ``b_ingress``) on ``node-2``; blocks 10.65.0.0/26 and 10.65.1.0/26 routed over the
    underlay directly, or through ``vxlan.calico`` (VNI 4096) as felix programs it."""
    hosts = ("172.18.0.11", "172.18.0.12")
    blocks = ("10.65.0.0/26", "10.65.1.0/26")
    vteps = ("10.65.0.1", "10.65.1.1")
    macs = ("66:f1:00:00:00:01", "66:f1:00:00:00:02")
    pods = (PodSpec("default/client", IPv4Address("10.65.0.2"), POD_A),
            PodSpec("default/web", IPv4Address("10.65.1.2"), POD_B))
    endpoints = ((SampleEndpoint(POD_A),), (SampleEndpoint(POD_B, ingress=b_ingress),))
    nodes = []
    for me, other in ((0, 1), (1, 0)):
        if vxlan:
            remote = RouteSpec(IPv4Network(blocks[other]), VXLAN_DEVICE,
                               via=IPv4Address(vteps[other]), onlink=True)
            vx = VxlanSpec(4096, 4789, IPv4Address(vteps[me]), macs[me],
                           ((IPv4Address(vteps[other]), macs[other], IPv4Address(hosts[other])),))
        else:
            remote = RouteSpec(IPv4Network(blocks[other]), "eth0", via=IPv4Address(hosts[other]))
            vx = None
        nodes.append(NodeSpec(
            f"node-{me + 1}", IPv4Interface(f"{hosts[me]}/24"), pods=(pods[me],),
            routes=(remote, RouteSpec(IPv4Network(blocks[me]), None, kind="blackhole")),
            iptables=felix_iptables(endpoints[me], vxlan=vxlan),
            ipsets=felix_ipsets([POOL], hosts if vxlan else ()), vxlan=vx))
    return TopologySpec(nodes=tuple(nodes))
