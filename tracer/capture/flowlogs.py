"""Calico flow logs in: one typed table for felix's file output, Goldmane flows and Whisker's API.

Formats, from projectcalico/calico:

- felix flow logs (``flows.log``, one JSON object per line): the ``FlowLogJSONOutput`` record
  that felix/collector writes, sample in felix/collector/flowlog/testdata/flows.log:
  ``start_time``/``end_time`` (Unix seconds), ``source_ip``/``dest_ip`` (null when
  aggregated away), ``source_port``/``dest_port`` (null for ICMP or when aggregated),
  ``source_name`` (``-`` when aggregated), ``source_name_aggr``, ``source_namespace``,
  ``source_type`` (``wep``/``hep``/``ns``/``net``), ``source_labels: {"labels": ["k=v"]}``,
  the same for ``dest_*``, ``dest_service_{namespace,name,port,port_num}``, ``proto``
  (``tcp``/``udp``/``icmp``/... or a number), ``action`` (``allow``/``deny``), ``reporter``
  (``src``/``dst``), ``policies: {"all_policies": ["<index>|<tier>|<name>|<action>[|<rule>]"]}``
  (felix/collector/flowlog/types.go ``newFlowPolicySet``), ``num_flows``,
  ``num_flows_started``, ``num_flows_completed``, ``packets_in/out``, ``bytes_in/out``.
- Goldmane (goldmane/proto/api.proto ``Flow``, as protojson or with proto field names;
  optionally wrapped in a ``FlowResult`` ``{"id", "flow"}``): ``Key`` with ``source_name``,
  ``source_namespace``, ``source_type`` (EndpointType), ``dest_*``, ``dest_port``,
  ``dest_service_*``, ``proto``, ``reporter`` (``Src``/``Dst``), ``action``
  (``Allow``/``Deny``/``Pass``), ``policies`` (``enforced_policies``/``pending_policies`` of
  PolicyHit: kind, namespace, name, tier, action, policy_index, rule_index, trigger);
  ``start_time``/``end_time`` (Unix seconds; protojson writes int64 as strings),
  ``source_labels``/``dest_labels`` (lists of ``k=v``), packets/bytes,
  ``num_connections_{started,completed,live}``.
- Whisker's API (whisker-backend/pkg/apis/v1/flows.go ``FlowResponse``): RFC 3339 times,
  labels joined with ``" | "``, ``protocol``, ``policies: {"enforced", "pending"}``, and names
  ``PUBLIC NETWORK``/``PRIVATE NETWORK`` for Goldmane's ``pub``/``pvt`` and namespace
  ``Global`` for none (whisker-backend/pkg/handlers/v1/protoconvert.go).

Goldmane and Whisker never carry IP addresses or source ports: their rows keep names and
namespaces so the caller can resolve endpoints. A bad record is an
:class:`~tracer.errors.InputError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from ipaddress import ip_address
from typing import Any

import pandas as pd

from tracer import protocols as p
from tracer.errors import InputError

COLUMNS = {           # column -> pandas dtype
    "format": "string", "file": "string", "line": "Int64",
    "start_time": "datetime64[ns, UTC]", "end_time": "datetime64[ns, UTC]",
    "protocol": "Int64", "proto": "string",
    "source_ip": "string", "source_port": "Int64", "source_name": "string",
    "source_name_aggr": "string", "source_namespace": "string", "source_type": "string",
    "source_labels": "object",
    "dest_ip": "string", "dest_port": "Int64", "dest_name": "string",
    "dest_name_aggr": "string", "dest_namespace": "string", "dest_type": "string",
    "dest_labels": "object",
    "dest_service_namespace": "string", "dest_service_name": "string",
    "dest_service_port_name": "string", "dest_service_port": "Int64",
    "action": "string", "reporter": "string", "policies": "object",
    "pending_policies": "object",
    "packets_in": "Int64", "packets_out": "Int64", "bytes_in": "Int64", "bytes_out": "Int64",
    "num_flows": "Int64", "num_flows_started": "Int64", "num_flows_completed": "Int64",
}
ACTIONS = ("allow", "deny", "pass")
REPORTERS = ("src", "dst")
# Goldmane EndpointType -> felix's short endpoint types.
ENDPOINT_TYPES = {"WorkloadEndpoint": "wep", "HostEndpoint": "hep", "NetworkSet": "ns",
                  "Network": "net", "EndpointTypeUnspecified": "", "1": "wep", "2": "hep",
                  "3": "ns", "4": "net", "0": ""}
FELIX_TYPES = ("wep", "hep", "ns", "net")
WHISKER_NAMES = {"PUBLIC NETWORK": "pub", "PRIVATE NETWORK": "pvt"}
NONE = "-"            # felix's "not included / aggregated" marker
MAX_SECONDS = 9_000_000_000      # year 2255: inside pandas' nanosecond datetime range


class _Bad(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")


def read_flow_logs(path: str) -> pd.DataFrame:
    """The flow records in ``path`` (JSON lines, a JSON array, or an object with an
    ``items``/``flows`` list), one row each, typed as :data:`COLUMNS`."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read flow log: {err}", file=path) from None
    rows = [_row(record, path, line) for line, record in _records(text, path)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    return frame.astype(COLUMNS)


def _records(text: str, path: str):
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"not JSON: {err.msg}", file=path, obj=f"line {err.lineno}") \
                from None
        yield from ((1, record) for record in whole)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"not JSON: {err.msg}", file=path, obj=f"line {number}") from None
        listed = record.get("items", record.get("flows")) if isinstance(record, dict) else None
        if isinstance(listed, list):
            yield from ((number, item) for item in listed)
        else:
            yield number, record


def _row(record: Any, path: str, line: int) -> dict[str, Any]:
    try:
        if not isinstance(record, dict):
            raise _Bad("record", "not a JSON object")
        if "flow" in record and isinstance(record["flow"], dict):      # Goldmane FlowResult
            record = record["flow"]
        key = record.get("Key", record.get("key"))
        if isinstance(key, dict):
            row = _goldmane(record, key)
        elif "protocol" in record and "proto" not in record:
            row = _whisker(record)
        elif "proto" in record:
            row = _felix(record)
        else:
            raise _Bad("record", "not a felix flow log, Goldmane flow or Whisker flow "
                       "(no proto, protocol or Key)")
    except _Bad as bad:
        raise InputError(str(bad), file=path, obj=f"line {line}") from None
    row.update(file=path, line=line)
    return row


# ----------------------------------------------------------------------------- fields
def _get(record: dict, *names: str, default: Any = None) -> Any:
    """The first of ``names`` present (snake_case and protojson's lowerCamelCase)."""
    for name in names:
        if name in record:
            return record[name]
        camel = name.split("_")[0] + "".join(w.title() for w in name.split("_")[1:])
        if camel in record:
            return record[camel]
    return default


def _int(record: dict, name: str, *, nullable: bool = True, lo: int = 0,
         hi: int | None = None) -> int | None:
    value = _get(record, name)
    if value is None:
        if nullable:
            return None
        raise _Bad(name, "missing")
    if isinstance(value, str) and value.lstrip("-").isdigit():      # protojson int64
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(name, f"expected an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise _Bad(name, f"{value} out of range")
    return value


def _str(record: dict, name: str, default: str = "") -> str:
    value = _get(record, name, default=default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _Bad(name, f"expected a string, got {value!r}")
    return value


def _ip(record: dict, name: str) -> str | None:
    value = _get(record, name)
    if value in (None, "", NONE):
        return None
    try:
        return str(ip_address(value))
    except ValueError:
        raise _Bad(name, f"not an IP address: {value!r}") from None


def _protocol(value: Any, name: str) -> tuple[int, str]:
    number = p.protocol_number(value) if isinstance(value, (str, int)) else None
    if isinstance(value, str) and value.lower() == "icmp6":
        number = p.ICMPV6                           # felix's name for 58
    if number is None or isinstance(value, bool):
        raise _Bad(name, f"unknown protocol {value!r}")
    return number, p.PROTOCOL_NAMES.get(number, str(number))


def _choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    text = str(value).lower() if isinstance(value, (str, int)) else ""
    if text not in allowed:
        raise _Bad(name, f"expected one of {', '.join(allowed)}, got {value!r}")
    return text


def _time(record: dict, name: str) -> pd.Timestamp:
    value = _get(record, name)
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Bad(name, f"not an RFC 3339 time: {value!r}") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=timezone.utc)
        try:
            return pd.Timestamp(stamp).tz_convert("UTC")
        except (OverflowError, ValueError):         # pandas holds 1677..2262 in ns
            raise _Bad(name, f"time out of range: {value!r}") from None
    seconds = _int(record, name, nullable=False, hi=MAX_SECONDS)
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def _labels(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):                     # felix: {"labels": ["k=v", ...]}
        value = value.get("labels") or []
    if isinstance(value, str):                      # whisker: "k=v | k2=v2"
        value = [part.strip() for part in value.split(" | ") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(name, "expected a list of 'key=value' labels")
    labels = {}
    for item in value:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise _Bad(name, f"label {item!r} is not key=value")
        labels[key] = val
    return labels


def _counts(record: dict) -> dict[str, int | None]:
    out = {name: _int(record, name) for name in ("packets_in", "packets_out", "bytes_in",
                                                 "bytes_out")}
    out["num_flows"] = _int(record, "num_flows")
    out["num_flows_started"] = _int(record, "num_flows_started")
    out["num_flows_completed"] = _int(record, "num_flows_completed")
    return out


def _obj(value: Any, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(field, f"expected an object, got {value!r}")
    return value


def _list(value: Any, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(field, f"expected a list, got {value!r}")
    return value


# ------------------------------------------------------------------------------ felix
def _felix(r: dict) -> dict[str, Any]:
    number, name = _protocol(r.get("proto"), "proto")
    row = {"format": "felix", "start_time": _time(r, "start_time"),
           "end_time": _time(r, "end_time"), "protocol": number, "proto": name,
           "action": _choice(r.get("action"), "action", ACTIONS),
           "reporter": _choice(r.get("reporter"), "reporter", REPORTERS)}
    for side, src in (("source", True), ("dest", False)):
        kind = _str(r, f"{side}_type")
        if kind and kind not in FELIX_TYPES:
            raise _Bad(f"{side}_type", f"expected one of {', '.join(FELIX_TYPES)}, got {kind!r}")
        row.update({f"{side}_ip": _ip(r, f"{side}_ip"),
                    f"{side}_port": _int(r, f"{side}_port", hi=65535),
                    f"{side}_name": _str(r, f"{side}_name", NONE),
                    f"{side}_name_aggr": _str(r, f"{side}_name_aggr", NONE),
                    f"{side}_namespace": _str(r, f"{side}_namespace", NONE),
                    f"{side}_type": kind,
                    f"{side}_labels": _labels(r.get(f"{side}_labels"), f"{side}_labels")})
    row.update(dest_service_namespace=_str(r, "dest_service_namespace", NONE),
               dest_service_name=_str(r, "dest_service_name", NONE),
               dest_service_port_name=_str(r, "dest_service_port", NONE),
               dest_service_port=_int(r, "dest_service_port_num", hi=65535))
    policies = _obj(r.get("policies"), "policies")
    row["policies"] = [_felix_policy(text)
                       for text in _list(policies.get("all_policies"), "policies")]
    row["pending_policies"] = [_felix_policy(text)
                               for text in _list(policies.get("pending_policies"), "policies")]
    row.update(_counts(r))
    return row


def _felix_policy(text: Any) -> dict[str, Any]:
    """``index|tier|name|action[|rule index]``; a namespaced name reads ``ns/tier.name``."""
    parts = text.split("|") if isinstance(text, str) else []
    if len(parts) < 4 or not parts[0].isdigit():
        raise _Bad("policies", f"expected 'index|tier|name|action', got {text!r}")
    namespace, _, name = parts[2].rpartition("/")
    rule = parts[4] if len(parts) > 4 and parts[4].lstrip("-").isdigit() else None
    return {"policy_index": int(parts[0]), "tier": parts[1], "namespace": namespace,
            "name": name, "action": parts[3].lower(), "kind": "",
            "rule_index": int(rule) if rule is not None else None}


# --------------------------------------------------------------------- goldmane, whisker
def _hit(hit: Any, field: str) -> dict[str, Any]:
    if not isinstance(hit, dict):
        raise _Bad(field, "expected a policy hit object")
    return {"policy_index": _int(hit, "policy_index") or 0, "tier": _str(hit, "tier"),
            "namespace": _str(hit, "namespace"), "name": _str(hit, "name"),
            "action": _str(hit, "action").lower(), "kind": str(_get(hit, "kind", default="")),
            "rule_index": _int(hit, "rule_index", lo=-1)}


def _common(r: dict, key: dict, fmt: str, proto_field: str) -> dict[str, Any]:
    number, name = _protocol(_get(key, proto_field), proto_field)
    row = {"format": fmt, "start_time": _time(r, "start_time"), "end_time": _time(r, "end_time"),
           "protocol": number, "proto": name,
           "action": _choice(key.get("action"), "action", ACTIONS),
           "reporter": _choice(key.get("reporter"), "reporter", REPORTERS),
           "source_ip": None, "source_port": None, "dest_ip": None,
           "dest_port": _int(key, "dest_port", hi=65535)}
    for side in ("source", "dest"):
        name_value = _str(key, f"{side}_name")
        row[f"{side}_name"] = WHISKER_NAMES.get(name_value, name_value)
        row[f"{side}_name_aggr"] = row[f"{side}_name"]
        namespace = _str(key, f"{side}_namespace")
        row[f"{side}_namespace"] = "" if namespace in ("Global", NONE) else namespace
        kind = str(_get(key, f"{side}_type", default="") or "")
        row[f"{side}_type"] = ENDPOINT_TYPES.get(kind, kind)
        row[f"{side}_labels"] = _labels(_get(r, f"{side}_labels"), f"{side}_labels")
    row.update(dest_service_namespace=_str(key, "dest_service_namespace"),
               dest_service_name=_str(key, "dest_service_name"),
               dest_service_port_name=_str(key, "dest_service_port_name"),
               dest_service_port=_int(key, "dest_service_port", hi=65535) or None)
    counts = _counts(r)
    counts["num_flows_started"] = _int(r, "num_connections_started")
    counts["num_flows_completed"] = _int(r, "num_connections_completed")
    row.update(counts)
    return row


def _goldmane(r: dict, key: dict) -> dict[str, Any]:
    row = _common(r, key, "goldmane", "proto")
    trace = _obj(key.get("policies"), "policies")
    row["policies"] = [_hit(h, "policies")
                       for h in _list(_get(trace, "enforced_policies"), "policies")]
    row["pending_policies"] = [_hit(h, "policies")
                               for h in _list(_get(trace, "pending_policies"), "policies")]
    return row


def _whisker(r: dict) -> dict[str, Any]:
    row = _common(r, r, "whisker", "protocol")
    trace = _obj(r.get("policies"), "policies")
    row["policies"] = [_hit(h, "policies") for h in _list(trace.get("enforced"), "policies")]
    row["pending_policies"] = [_hit(h, "policies")
                               for h in _list(trace.get("pending"), "policies")]
    return row
