"""The integer vocabulary shared by the array compiler and the numba kernels.

One place for every code: match kinds, target kinds, effects (in the order of
:data:`tracer.dataplane.events.EFFECTS`), conntrack state and status bits, address types.
"""

from __future__ import annotations

from tracer.dataplane.events import EFFECTS

# Match kinds (column 0 of the match table).
M_PROTO, M_ADDR, M_IFACE, M_PORT, M_ICMP, M_MARK, M_CONNMARK, M_CONNTRACK, M_SET, \
    M_ADDRTYPE, M_RPF, M_TRUE, M_TCPFLAGS, M_PROTOMOD, M_STATISTIC = range(15)
MATCH_COLS = 8                     # kind, negated, then up to six operands

# Target kinds (column 2 of the rule table); the first eleven are the effect they produce.
EFFECT_CODE = {name: i for i, name in enumerate(EFFECTS)}
E_CONTINUE, E_JUMP, E_GOTO, E_RETURN, E_ACCEPT, E_DROP, E_REJECT, E_DNAT, E_SNAT, \
    E_MASQUERADE, E_NOTRACK = (EFFECT_CODE[n] for n in (
        "CONTINUE", "JUMP", "GOTO", "RETURN", "ACCEPT", "DROP", "REJECT", "DNAT", "SNAT",
        "MASQUERADE", "NOTRACK"))
T_SETMARK, T_CONNMARK = 11, 12
RULE_COLS = 8                      # match start, match end, target kind, five operands
CONNMARK_SET, CONNMARK_SAVE, CONNMARK_RESTORE = 0, 1, 2

# Event kinds in a recorded traversal.
K_RULE, K_RETURN, K_POLICY = 0, 1, 2
KIND_NAMES = ("rule", "return", "policy")
EVENT_COLS = 7                     # chain, kind, effect, rule number, target, mark before/after

# Conntrack state codes (PacketView.ct_state), the order of tracer.conntrack.arrays.
CT_STATE_CODE = {"NEW": 0, "ESTABLISHED": 1, "RELATED": 2, "INVALID": 3, "UNTRACKED": 4}
CT_INVALID, CT_UNTRACKED = 3, 4
# Bits of --ctstate: the five states, then the SNAT / DNAT pseudo-states.
STATE_BIT = {**{name: 1 << code for name, code in CT_STATE_CODE.items()},
             "SNAT": 1 << 5, "DNAT": 1 << 6}
# Bits of the packet's conntrack status (PacketView.ct_status); SNAT / DNAT share the
# --ctstate bits so one mask lifts them into the state test.
STATUS_BIT = {"EXPECTED": 1 << 0, "SEEN_REPLY": 1 << 1, "ASSURED": 1 << 2, "CONFIRMED": 1 << 3,
              "SNAT": 1 << 5, "DNAT": 1 << 6}
NAT_STATUS_BITS = STATUS_BIT["SNAT"] | STATUS_BIT["DNAT"]

# xt_addrtype answers (tracer.dataplane.node.address_type) as bits.
ADDR_TYPE_BIT = {"LOCAL": 1, "BROADCAST": 2, "MULTICAST": 4, "UNICAST": 8}

# Route kinds for the reverse-path lookup.
ROUTE_KIND = {"unicast": 0, "blackhole": 1, "local": 2, "throw": 3}

# Kernel error codes (the reference raises InputError for the same conditions).
ERR_NONE, ERR_UNDEFINED_CHAIN, ERR_DEPTH, ERR_STEPS, ERR_EVENTS = range(5)

NO_VALUE = -1                      # an absent port / ICMP field / interface
