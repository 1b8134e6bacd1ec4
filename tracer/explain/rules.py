"""Short human descriptions of Calico rules: "from app == 'api' on TCP 5432"."""

from __future__ import annotations

import re

from tracer.model.cluster import EntityRule, Rule

# Boilerplate terms the k8s conversion adds to every selector; they say nothing to a reader.
_NOISE = (re.compile(r'projectcalico\.org/orchestrator == ["\']k8s["\'](\s*&&\s*)?'),)


def readable_selector(text: str | None) -> str:
    if not text:
        return ""
    out = text
    for pattern in _NOISE:
        out = pattern.sub("", out)
    out = re.sub(r"projectcalico\.org/namespace == ([\"'])([^\"']*)\1", r"namespace \2", out)
    out = out.replace("pcns.", "namespace label ")
    out = out.replace("( && ", "(").replace(" && )", ")").replace("()", "all()")
    out = re.sub(r"\(\s*\)", "all()", out)
    return out.strip() or "all()"


def describe_entity(entity: EntityRule) -> str:
    parts = []
    if entity.selector:
        parts.append(readable_selector(entity.selector))
    # entity.namespace_selector is already folded into entity.selector by the converter.
    if entity.not_selector:
        parts.append(f"not {readable_selector(entity.not_selector)}")
    if entity.nets:
        parts.append("nets " + ", ".join(str(n) for n in entity.nets))
    if entity.not_nets:
        parts.append("except " + ", ".join(str(n) for n in entity.not_nets))
    if entity.service_account_names:
        parts.append("service accounts " + ", ".join(entity.service_account_names))
    return " ".join(parts)


def describe_rule(rule: Rule, direction: str) -> str:
    peer = rule.source if direction == "ingress" else rule.destination
    text = []
    who = describe_entity(peer)
    text.append(("from " if direction == "ingress" else "to ") + (who or "anywhere"))
    ports = rule.destination.ports
    proto = rule.protocol or ("TCP" if ports else None)
    if ports:
        text.append(f"on {proto} " + ",".join(str(p) for p in ports))
    elif proto:
        text.append(f"on {proto}")
    if rule.not_protocol:
        text.append(f"not {rule.not_protocol}")
    return " ".join(text)
