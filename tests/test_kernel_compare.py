"""compare(): agreement and disagreement between simulator events and kernel trace events."""

from tracer.dataplane.events import NetfilterEvent
from tracer.dataplane.iptables_save import parse_rule
from tracer.kernel.compare import compare
from tracer.kernel.xtrace import KernelEvent

# How felix writes the rules (long options, --set-mark) ...
FELIX = {
    "hook": "-A FORWARD -m comment --comment \"cali:wUHhoiAYhphO9Mso\" --jump cali-FORWARD",
    "clear": "-A cali-FORWARD -m comment --comment \"cali:vjrMJCRpqwy5oRoX\" "
             "--jump MARK --set-mark 0x0/0x1a0000",
    "goto": "-A cali-FORWARD -m comment --comment \"cali:A2\" --out-interface caliB "
            "--goto cali-tw-caliB",
    "deny": "-A cali-tw-caliB -m comment --comment \"cali:D1\" -m mark --mark 0x0/0x20000 "
            "--jump REJECT",
}
# ... and how the kernel's trace prints the same rules.
KERNEL = {
    "hook": "-4 -t filter -A FORWARD -m comment --comment \"cali:wUHhoiAYhphO9Mso\" -j cali-FORWARD",
    "clear": "-4 -t filter -A cali-FORWARD -m comment --comment \"cali:vjrMJCRpqwy5oRoX\" "
             "-j MARK --set-xmark 0x0/0x1a0000",
    "goto": "-4 -t filter -A cali-FORWARD -o caliB -m comment --comment \"cali:A2\" "
            "-g cali-tw-caliB",
    "deny": "-4 -t filter -A cali-tw-caliB -m comment --comment \"cali:D1\" "
            "-m mark --mark 0x0/0x20000 -j REJECT --reject-with icmp-port-unreachable",
}
TRACE_RULE = ("-4 -t raw -A PREROUTING -s 10.65.0.2/32 -p tcp -m comment --comment "
              "ctk-trace-1-1 -j TRACE")


def sim(key: str, effect: str, target: str | None = None) -> tuple[str, NetfilterEvent]:
    chain, rule = parse_rule(FELIX[key])
    return "node-1", NetfilterEvent("filter", chain, "rule", effect, 1, rule, target)


def kern(key: str, verdict: str, target: str | None = None, node: str = "node-1") -> KernelEvent:
    chain = KERNEL[key].split()[4]
    return KernelEvent(node, "filter", chain, "rule", verdict, KERNEL[key], target, "abc",
                       "caliA", "caliB")


def sim_path(final_effect: str = "REJECT"):
    return [sim("hook", "JUMP", "cali-FORWARD"), sim("clear", "CONTINUE"),
            ("node-1", NetfilterEvent("filter", "cali-from-hep-forward", "return", "RETURN")),
            sim("goto", "GOTO", "cali-tw-caliB"), sim("deny", final_effect)]


def kernel_path(final_verdict: str = "DROP", node: str = "node-1"):
    trace = KernelEvent(node, "raw", "PREROUTING", "rule", "CONTINUE", TRACE_RULE, None, "abc",
                        "caliA", None)
    return [trace, kern("hook", "JUMP", "cali-FORWARD", node), kern("clear", "CONTINUE", node=node),
            kern("goto", "GOTO", "cali-tw-caliB", node), kern("deny", final_verdict, node=node)]


def test_same_rules_spelled_differently_agree():
    result = compare(sim_path(), kernel_path(), sim_delivered=False, kernel_delivered=False)
    assert result.agree, result.render()
    # the probe's TRACE rule and the implicit return are not part of the comparison
    assert len(result.sim) == len(result.kernel) == 4
    assert [s.verdict for s in result.kernel] == ["JUMP", "CONTINUE", "GOTO", "DROP"]


def test_reject_maps_to_the_kernels_drop_but_accept_does_not():
    result = compare(sim_path("ACCEPT"), kernel_path("DROP"), False, False)
    assert not result.agree
    assert "verdict simulator=ACCEPT kernel=DROP" in result.reason


def test_a_different_rule_disagrees():
    events = sim_path()
    chain, rule = parse_rule(FELIX["deny"].replace("0x0/0x20000", "0x0/0x10000"))
    events[-1] = ("node-1", NetfilterEvent("filter", chain, "rule", "REJECT", 5, rule))
    result = compare(events, kernel_path(), False, False)
    assert not result.agree
    assert "rule differs in filter:cali-tw-caliB" in result.reason


def test_a_different_jump_target_disagrees():
    events = sim_path()
    events[3] = sim("goto", "GOTO", "cali-tw-caliX")
    result = compare(events, kernel_path(), False, False)
    assert not result.agree and "target_chain" in result.reason


def test_missing_event_and_delivery_disagree():
    result = compare(sim_path()[:-1], kernel_path(), False, False)
    assert not result.agree and "only the kernel has event 4" in result.reason
    result = compare(sim_path(), kernel_path(), sim_delivered=True, kernel_delivered=False)
    assert not result.agree and "delivery differs" in result.reason


def test_events_on_another_node_are_compared_separately():
    kernel = kernel_path() + kernel_path(node="node-2")[1:]
    sim_events = sim_path() + [("node-2", e) for _, e in sim_path()]
    assert compare(sim_events, kernel, True, True).agree
    result = compare(sim_path(), kernel, True, True)
    assert not result.agree and "node node-2" in result.reason


def test_unparseable_kernel_rule_never_agrees():
    bad = KernelEvent("node-1", "filter", "cali-tw-caliB", "rule", "DROP",
                      "-4 -t filter -A cali-tw-caliB -m frobnicate --zap -j DROP", None, "abc",
                      None, None)
    result = compare(sim_path(), kernel_path()[:-1] + [bad], False, False)
    assert not result.agree and "not parsed" in result.reason


def test_render_shows_both_sides_and_marks_the_difference():
    result = compare(sim_path("ACCEPT"), kernel_path("DROP"), True, False)
    text = result.render(width=140)
    lines = text.splitlines()
    assert lines[0].startswith("DISAGREE")
    assert "delivered: simulator=yes kernel=no" in text
    assert any(line.startswith("= filter:FORWARD rule JUMP:cali-FORWARD") for line in lines)
    differing = [line for line in lines if line.startswith("! ")]
    assert len(differing) == 1 and "ACCEPT" in differing[0] and "│ filter:" in differing[0]
    assert all(len(line) <= 140 for line in lines[2:])
