"""Scenarios re-written with other FelixConfiguration knobs and pool encapsulations.

Every knob here is one the renderer or the dataplane honours (ports, device names, MTUs, the
mark mask, the interface prefix, encapsulation modes). A scenario's verdicts must not depend
on them: that is what the knob tests (simulator, and kernel where it can realise them) check.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from hypothesis import strategies as st

# Devices a workload prefix must not claim (felix would treat them as workloads).
_OTHER_DEVICES = ("eth0", "lo", "tunl0", "vxlan.calico")

ENCAPSULATIONS = {
    "ipip": {"ipipMode": "Always", "vxlanMode": "Never"},
    "ipip-crosssubnet": {"ipipMode": "CrossSubnet", "vxlanMode": "Never"},
    "vxlan": {"ipipMode": "Never", "vxlanMode": "Always"},
    "vxlan-crosssubnet": {"ipipMode": "Never", "vxlanMode": "CrossSubnet"},
    "none": {"ipipMode": "Never", "vxlanMode": "Never"},
}


def _bits(mask_bits: list[int]) -> int:
    value = 0
    for bit in mask_bits:
        value |= 1 << bit
    return value


@st.composite
def felix_knobs(draw) -> dict:
    """A FelixConfiguration spec fragment (the keys felix reads)."""
    wg_name = draw(st.from_regex(r"\A(wg|wireguard)[a-z0-9.]{0,8}\Z", fullmatch=True))
    prefix = draw(st.from_regex(r"\A[a-z]{2,4}\Z", fullmatch=True).filter(
        lambda p: not any(dev.startswith(p) for dev in (*_OTHER_DEVICES, wg_name))))
    vxlan_port = draw(st.integers(1024, 65000))
    wg_port = draw(st.integers(1024, 65000).filter(lambda p: p != vxlan_port))
    # felix allocates its marks from the mask; keep clear of kube-proxy's 0x4000 / 0x8000.
    mask_bits = draw(st.lists(st.integers(16, 31), min_size=6, max_size=16, unique=True))
    low = draw(st.integers(1024, 65000))
    nat = {"natPortRange": f"{low}:{draw(st.integers(low, 65535))}"} if draw(st.booleans()) \
        else {}
    if draw(st.booleans()):
        nat["iptablesNATOutgoingInterfaceFilter"] = "eth0"      # the underlay: same verdicts
    return {
        **nat,
        "vxlanPort": vxlan_port,
        "vxlanVNI": draw(st.integers(1, 2 ** 24 - 1)),
        "wireguardListeningPort": wg_port,
        "wireguardInterfaceName": wg_name,
        "ipipMTU": draw(st.integers(1200, 1480)),
        "vxlanMTU": draw(st.integers(1200, 1450)),
        "wireguardMTU": draw(st.integers(1200, 1440)),
        "iptablesMarkMask": _bits(mask_bits),
        "interfacePrefix": prefix,
    }


def rewrite(scenario: Path, target: Path, *, felix: dict, encapsulation: str | None) -> Path:
    """Copy ``scenario`` to ``target`` with the default FelixConfiguration carrying ``felix``
    and, when ``encapsulation`` is given, every IPPool using that mode."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(scenario, target)
    found_felix = False
    for path in sorted(target.glob("*.yaml")):
        if path.name.startswith("scenario."):
            continue
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        for doc in _objects(docs):
            kind = doc.get("kind")
            if kind == "FelixConfiguration" and doc.get("metadata", {}).get("name") == "default":
                doc.setdefault("spec", {}).update(felix)
                found_felix = True
            if kind == "IPPool" and encapsulation is not None:
                doc.setdefault("spec", {}).update(ENCAPSULATIONS[encapsulation])
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    if not found_felix:
        (target / "knobs.yaml").write_text(yaml.safe_dump({
            "apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
            "metadata": {"name": "default"}, "spec": felix}))
    return target


def _objects(docs: list) -> list[dict]:
    out = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List":
            out += [item for item in doc.get("items") or [] if isinstance(item, dict)]
        elif isinstance(doc, dict):
            out.append(doc)
    return out
