"""Read manifests (files, directories, multi-document YAML, ``kind: List``) into a :class:`Cluster`.

The loader only reads, dispatches by kind and checks fields; conversion to Calico's backend form
lives in ``tracer.model.convert_k8s`` / ``convert_calico`` and address allocation in
``tracer.model.ipam``. Defaults follow what a real cluster has: a referenced namespace exists
(with the ``kubernetes.io/metadata.name`` label the API server adds), every namespace has a
``default`` ServiceAccount, the ``default`` tier exists, and without an IPPool calico-node's
``default-ipv4-ippool`` (192.168.0.0/16, /26 blocks, IPIP Always, natOutgoing) is used.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import yaml

from tracer import DEFAULT_CALICO_VERSION
from tracer.errors import InputError, escape, quote, shorten
from tracer.model import schema
from tracer.model.cluster import (
    BUILTIN_TIERS, Cluster, FelixConfig, IPPool, Namespace, Node, Origin, Pod, Policy,
    ServiceAccount)
from tracer.model.ipam import BlockAllocator, IPAMExhausted
from tracer.model.yaml_fast import FastSafeLoader, load_documents
from tracer.selector.selector import SelectorError, parse_selector
from tracer.model import convert_calico, convert_k8s
from tracer.model.convert_calico import Ctx

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
SCENARIO_FILES = ("scenario.yaml", "scenario.yml")
NOT_MANIFESTS = SCENARIO_FILES + ("lab.yaml",)   # a directory's descriptions, not objects
CALICO_GROUPS = ("projectcalico.org", "crd.projectcalico.org")
K8S_KINDS = {
    ("", "Namespace"): "Namespace", ("", "Pod"): "Pod", ("", "Node"): "Node",
    ("", "ServiceAccount"): "ServiceAccount", ("", "Service"): "Service",
    ("discovery.k8s.io", "EndpointSlice"): "EndpointSlice",
    ("networking.k8s.io", "NetworkPolicy"): "NetworkPolicy",
}
CALICO_KINDS = ("NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy",
                "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy", "Tier", "NetworkSet",
                "GlobalNetworkSet", "HostEndpoint", "Profile", "IPPool", "FelixConfiguration",
                "BGPConfiguration", "Node")
NAMESPACED = {"Pod", "ServiceAccount", "Service", "EndpointSlice", "NetworkPolicy",
              "calico/NetworkPolicy", "calico/StagedNetworkPolicy",
              "calico/StagedKubernetesNetworkPolicy", "calico/NetworkSet"}
BUILTIN_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DEFAULT_POOL = {"cidr": "192.168.0.0/16", "blockSize": 26, "ipipMode": "Always",
                "vxlanMode": "Never", "natOutgoing": True}
ANNOTATION = "projectcalico.org/"


@dataclass
class RawObject:
    """One manifest object after List expansion, before conversion."""

    key: str               # schema key: "Pod", "NetworkPolicy", "calico/NetworkPolicy", ...
    doc: dict
    file: str

    @property
    def kind(self) -> str:
        return self.key.split("/")[-1]

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str | None:
        if self.key not in NAMESPACED:
            return None
        return str((self.doc.get("metadata") or {}).get("namespace") or "default")

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.doc.get("metadata") or {}).get("labels") or {})

    @property
    def annotations(self) -> dict[str, str]:
        return dict((self.doc.get("metadata") or {}).get("annotations") or {})

    @property
    def spec(self) -> dict:
        return self.doc.get("spec") or {}

    @property
    def ident(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def origin(self) -> Origin:
        return Origin(file=self.file, kind=self.kind, name=self.ident)


# ================================================================================= public API


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large, mostly acyclic object graph is
    built (a cluster's manifests, or its cached copy): the collector would otherwise walk the
    growing graph again and again, which at 10,000 pods costs more than the work itself."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_cluster(paths: Sequence[str | os.PathLike], *,
                 calico_version: str | None = None) -> Cluster:
    """Read every manifest under ``paths`` and convert it to Calico's backend form.

    The Calico release comes from ``calico_version``, else a scenario's ``calicoVersion``
    (the release the cluster runs), else the newest release modelled."""
    with collector_paused():
        return _load_cluster(paths, calico_version)


def _load_cluster(paths: Sequence[str | os.PathLike], calico_version: str | None) -> Cluster:
    if calico_version is None:
        metas = (load_scenario_meta(path) for path in paths)
        calico_version = next((str(m["calicoVersion"]) for m in metas
                               if m.get("calicoVersion")), None)
    version = parse_version(calico_version or DEFAULT_CALICO_VERSION)
    cluster = Cluster()
    objects: list[RawObject] = []
    skipped: dict[str, list[str]] = {}
    for file in manifest_files(paths):
        for index, doc in enumerate(read_documents(file), start=1):
            for item, where in expand_lists(doc, file, f"document {index}"):
                raw = classify(item, file, skipped, where)
                if raw is not None:
                    objects.append(raw)
    for kind, files in sorted(skipped.items()):
        cluster.warnings.append(f"{files[0]}: skipped {len(files)} object(s) of kind {kind} "
                                f"(not used by calico-trace)")
    for path in paths:
        meta = load_scenario_meta(path)
        if meta and not cluster.title:
            cluster.title = str(meta.get("title") or "")
            cluster.description = str(meta.get("description") or "")
    _Builder(cluster, objects, version, calico_version or DEFAULT_CALICO_VERSION).build()
    return cluster


def load_scenario_meta(path: str | os.PathLike) -> dict:
    """The contents of a scenario directory's ``scenario.yaml`` (or that file itself), or {}."""
    target = Path(path)
    kind = _entry_kind(target)
    candidates = [target] if kind == "file" and target.name in SCENARIO_FILES else \
        [target / name for name in SCENARIO_FILES] if kind == "dir" else []
    for candidate in candidates:
        if _entry_kind(candidate) == "file":
            docs = list(read_documents(str(candidate)))
            if not docs:
                return {}
            if not isinstance(docs[0], dict):
                raise InputError("scenario metadata must be a mapping", file=str(candidate))
            return docs[0]
    return {}


def parse_version(text: str) -> tuple[int, int]:
    """"3.31", "v3.31.2" -> (3, 31)."""
    parts = text.strip().lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise InputError(f"bad Calico version {quote(text)} (expected e.g. 3.31)") from None


# ================================================================================= reading


def manifest_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    """Files named by ``-f``: a file as given, a directory's *.yaml/*.yml/*.json (sorted)."""
    files: list[str] = []
    seen: set[Path] = set()
    for path in paths:
        target = Path(path)
        kind = _entry_kind(target)
        if kind == "dir":
            try:
                found = sorted(p for p in target.iterdir()
                               if p.is_file() and p.suffix in MANIFEST_SUFFIXES
                               and p.name not in NOT_MANIFESTS)
            except OSError as err:
                raise InputError(f"cannot read: {err.strerror or err}", file=str(path)) \
                    from None
        elif kind == "file":
            found = [] if target.name in NOT_MANIFESTS else [target]
        else:
            raise InputError("no such file or directory", file=str(path))
        for file in found:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(str(file))
    return files


def _entry_kind(path: Path) -> str | None:
    """"dir", "file" (anything else readable) or None when absent; other errors (a name too
    long, a loop of links, no permission) are the user's to hear about."""
    try:
        return "dir" if path.stat().st_mode & 0o170000 == 0o040000 else "file"
    except FileNotFoundError:
        return None
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", file=str(path)) from None
    except ValueError as err:                  # an embedded NUL byte
        raise InputError(f"bad path: {err}", file=str(path)) from None


def read_documents(file: str) -> Iterator[Any]:
    """Every non-empty document of a YAML or JSON file; syntax errors name line and column.

    What a file can make the reader do is bounded before anything is built: control characters
    are refused where YAML forbids them, alias expansion ("billion laughs") is counted from the
    parser's events, and no document may nest deeper than :data:`MAX_DEPTH`."""
    try:
        size = Path(file).stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"{size:,} bytes: larger than the {MAX_FILE_BYTES >> 20} MiB a "
                             f"manifest file may have", file=file)
        text = Path(file).read_bytes().decode("utf-8")
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", file=file) from None
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset "
                         f"{err.start})", file=file) from None
    if file.endswith(".json"):
        docs, shallow = [_read_json(text, file)], False
    else:
        docs, shallow = _read_yaml(text, file)
    for doc in docs:
        if doc is not None:
            if not shallow:
                _check_depth(doc, file)
            yield doc


MAX_FILE_BYTES = 64 << 20       # a cluster's worth of manifests is a few MiB
MAX_DEPTH = 64                  # nesting levels of a document; real manifests use about 12
MAX_YAML_NODES = 1_000_000      # nodes after alias expansion
# Characters YAML 1.1 forbids in a stream (printable: tab, LF, CR, x20-x7E, NEL, xA0 onwards
# except surrogates and xFFFE/xFFFF); JSON forbids raw control characters too.
FORBIDDEN = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd"
                       "\U00010000-\U0010ffff]")


def _line_column(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    return f"line {line} column {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


def _read_json(text: str, file: str) -> Any:
    bad = FORBIDDEN.search(text)
    if bad and bad.group() not in "\x85":
        raise InputError(f"control character {quote(bad.group())} at "
                         f"{_line_column(text, bad.start())}", file=file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"broken JSON at line {err.lineno} column {err.colno}: {err.msg}",
                         file=file) from None
    except RecursionError:
        raise InputError(f"JSON nested deeper than {MAX_DEPTH} levels", file=file) from None


def _read_yaml(text: str, file: str) -> tuple[list[Any], bool]:
    """The documents, and whether they are known to nest no deeper than :data:`MAX_DEPTH`."""
    bad = FORBIDDEN.search(text)
    if bad:
        raise InputError(f"control character {quote(bad.group())} at "
                         f"{_line_column(text, bad.start())} (not allowed in YAML)", file=file)
    loader = FastSafeLoader
    try:
        if _may_expand_or_nest_deeply(text):
            _check_expansion(text, loader, file)
        return load_documents(text, max_depth=MAX_DEPTH)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise InputError(f"broken YAML{where}: {problem}", file=file) from None
    except RecursionError:
        raise InputError(f"YAML nested deeper than {MAX_DEPTH} levels", file=file) from None


# A line's start up to its content is indentation and compact block entries ("- - x").
_BRACKET = re.compile(r"[\[\]{}]")


def _may_expand_or_nest_deeply(text: str) -> bool:
    """Whether the exact event walk of :func:`_check_expansion` is needed. Without an anchor
    nothing can expand. Block nesting moves content right by at least one column every two
    levels (a sequence may sit at its parent key's column), so it is bounded by twice the widest
    line start; flow nesting by the deepest bracket count (brackets in strings only raise it). Plain manifests pass in milliseconds instead of the seconds
    the walk costs on a big cluster."""
    if "&" in text:
        return True
    # 2 * (widest line start + 1) + brackets > MAX_DEPTH, asked as "does some line start
    # with room * [ ?:-]": one search instead of a list of every line's start.
    room = MAX_DEPTH - _bracket_depth_bound(text)
    if room < 2:
        return True
    return re.search(f"^[ ?:-]{{{room // 2}}}", text, re.MULTILINE) is not None


def _bracket_depth_bound(text: str) -> int:
    if "[" not in text and "{" not in text:
        return 0
    depth = deepest = 0
    for bracket in _BRACKET.findall(text):
        depth = depth + 1 if bracket in "[{" else max(depth - 1, 0)
        deepest = max(deepest, depth)
    return deepest


def _check_expansion(text: str, loader: type, file: str) -> None:
    """Refuse a stream whose aliases would expand past :data:`MAX_YAML_NODES` or that nests
    deeper than :data:`MAX_DEPTH`, from parser events (nothing is built)."""
    sizes: dict[str, int] = {}          # anchor -> expanded node count
    open_nodes: list[list] = []         # [anchor, count] per open collection
    expanded = 0                        # nodes the stream would build
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([event.anchor, 1])
            if len(open_nodes) > MAX_DEPTH:
                raise InputError(f"YAML nested deeper than {MAX_DEPTH} levels at "
                                 f"line {event.start_mark.line + 1}", file=file)
            expanded += 1
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
        elif isinstance(event, yaml.AliasEvent):
            anchor, size = None, sizes.get(event.anchor, 1)
            expanded += size
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
            expanded += 1
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        if open_nodes:
            open_nodes[-1][1] += size
        if expanded > MAX_YAML_NODES:
            raise InputError(f"YAML aliases expand to more than {MAX_YAML_NODES:,} nodes "
                             f"(an alias bomb?) at line {event.start_mark.line + 1}", file=file)


def _check_depth(doc: Any, file: str) -> None:
    """Iteratively: no document deeper than :data:`MAX_DEPTH` (the converters recurse)."""
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"document nested deeper than {MAX_DEPTH} levels", file=file)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def expand_lists(doc: Any, file: str, where: str) -> Iterator[tuple[dict, str]]:
    """A ``kind: List`` (or ``FooList``) yields its items; other documents yield themselves.

    Each comes with where it is (``document 2``, ``document 2 items[3]``) for errors about
    objects that have no usable name."""
    stack = [(doc, where)]
    while stack:
        doc, where = stack.pop()
        if not isinstance(doc, dict):
            raise InputError(f"a manifest object must be a mapping, got "
                             f"{type(doc).__name__ if doc is not None else 'null'}",
                             file=file, obj=where)
        kind = doc.get("kind")
        if isinstance(kind, str) and kind.endswith("List") and "items" in doc:
            items = doc.get("items")
            if items is None:
                continue
            if not isinstance(items, list):
                raise InputError(f"items: expected a list, got {type(items).__name__}",
                                 file=file, obj=f"{where} ({kind})")
            stack.extend((item, f"{where} items[{i}]") for i, item in reversed(list(
                enumerate(items))))
            continue
        yield doc, where


def classify(doc: dict, file: str, skipped: dict[str, list[str]],
             where: str = "") -> RawObject | None:
    """Schema key of a document, or None (recorded in ``skipped``) for kinds not modelled."""
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if not kind or not api_version:
        raise InputError("object without apiVersion/kind", file=file,
                         obj=_describe(doc, where))
    if not isinstance(kind, str) or not isinstance(api_version, str):
        raise InputError(f"apiVersion and kind must be strings, got {quote(api_version)} and "
                         f"{quote(kind)}", file=file, obj=where)
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    if group in CALICO_GROUPS and kind in CALICO_KINDS:
        key = f"calico/{kind}"
    elif (group, kind) in K8S_KINDS:
        key = K8S_KINDS[(group, kind)]
    else:
        skipped.setdefault(f"{escape(shorten(api_version, 60))} {escape(shorten(kind, 60))}",
                           []).append(file)
        return None
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        problem = "metadata: missing" if meta is None else \
            f"metadata: expected a mapping, got {type(meta).__name__}"
        raise InputError(problem, file=file, obj=f"{kind} ({where})")
    problem = schema.check(meta, schema.OBJECT_META, "metadata")
    if problem is not None:
        raise InputError(str(problem), file=file, obj=_describe(doc, where))
    raw = RawObject(key=key, doc=doc, file=file)
    if not raw.name:
        raise InputError("object without metadata.name", file=file, obj=f"{kind} ({where})")
    problem = schema.check(doc, schema.KIND_SCHEMAS[key])
    if problem is not None:
        raise InputError(str(problem), file=file, obj=f"{kind} {raw.ident}")
    return raw


def _describe(doc: dict, where: str) -> str:
    """``Kind namespace/name`` as far as the document says it, else where it is."""
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else None
    if isinstance(name, str) and name:
        ident = f"{namespace}/{name}" if isinstance(namespace, str) and namespace else name
        return escape(shorten(f"{kind} {ident}" if kind else ident, 120))
    return f"{escape(shorten(kind, 60))} ({where})" if kind else where


# ================================================================================= building


def _patch(version_text: str) -> int | None:
    """"v3.30.2" -> 2; "3.30" -> None (the release's newest patch)."""
    parts = version_text.strip().lstrip("vV").split(".")
    return int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None


def _created(raw: RawObject) -> str:
    """metadata.creationTimestamp as RFC 3339 UTC text (sorts in time order); absent sorts
    first. YAML reads an unquoted timestamp as a datetime."""
    value = (raw.doc.get("metadata") or {}).get("creationTimestamp") or ""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


@dataclass
class _Builder:
    """Turns the raw objects into the model, phase by phase (order matters: IPAM last)."""

    cluster: Cluster
    objects: list[RawObject]
    version: tuple[int, int]
    version_text: str
    by_key: dict[str, list[RawObject]] = field(default_factory=dict)
    _node_felix: dict[str, dict] = field(default_factory=dict)         # node -> changes
    _scoped_felix: list[tuple] = field(default_factory=list)   # (raw, selector, changes)

    def build(self) -> None:
        self._check_duplicates()
        for raw in self.objects:
            self.by_key.setdefault(raw.key, []).append(raw)
        self._felix()
        self._bgp()
        self._pools()
        self._namespaces_and_accounts()
        self._tiers()
        self._nodes()
        self._felix_nodes()
        self._pods()
        self._profiles()
        self._endpoints()
        self._policies()
        self._network_sets_and_host_endpoints()
        self._services()
        self._check_named_ports()

    def _ctx(self, raw: RawObject) -> Ctx:
        return Ctx(origin=raw.origin(), warnings=self.cluster.warnings,
                   calico_version=self.version, calico_patch=_patch(self.version_text))

    def _of(self, key: str) -> list[RawObject]:
        return self.by_key.get(key, [])

    # ------------------------------------------------------------------ checks

    def _check_duplicates(self) -> None:
        seen: dict[tuple[str, str], RawObject] = {}
        for raw in self.objects:
            # The k8s Node and projectcalico.org Node of a host describe one node.
            ident = (raw.key, raw.ident)
            if ident in seen:
                first = seen[ident]
                raise InputError(f"duplicate object (first defined in {first.file})",
                                 file=raw.file, obj=f"{raw.kind} {raw.ident}")
            seen[ident] = raw

    def _check_named_ports(self) -> None:
        declared = {p.name for pod in self.cluster.pods.values() for p in pod.ports if p.name}
        declared |= {name for slice_ in self.cluster.endpoint_slices
                     for name, _, _ in slice_.ports if name}
        for policy in self.cluster.policies:
            for direction in ("ingress", "egress"):
                for index, rule in enumerate(policy.rules(direction)):
                    for side in ("source", "destination"):
                        entity = getattr(rule, side)
                        for port in entity.ports + entity.not_ports:
                            if port.is_named and port.name not in declared:
                                raise InputError(
                                    f"{direction}[{index}].{side}: named port {quote(port.name)} "
                                    f"is not declared by any pod", file=policy.origin.file,
                                    obj=policy.origin.describe())

    # ------------------------------------------------------------------ felix, pools, tiers

    def _felix(self) -> None:
        """``default`` over felix's defaults. ``node.<name>`` and (v3.32+) selector-scoped
        objects become per-node overrides once the nodes are known (:meth:`_felix_nodes`)."""
        config = FelixConfig(calico_version=self.version_text)
        for raw in self._of("calico/FelixConfiguration"):
            per_node = raw.name.startswith("node.") and raw.name != "node."
            scoped = raw.name != "default" and not raw.name.startswith("node.")
            selector = raw.spec.get("nodeSelector")
            if selector is not None and not scoped:
                self.cluster.warnings.append(
                    f"{raw.file}: FelixConfiguration {raw.name}: spec.nodeSelector ignored "
                    f"(only valid when the name is neither 'default' nor 'node.<nodename>')")
            spec = {k: v for k, v in raw.spec.items() if k != "nodeSelector"}
            if raw.name == "default":
                config = convert_calico.felix_config(spec, config, self._ctx(raw))
            elif per_node:
                self._node_felix[raw.name[len("node."):]] = \
                    convert_calico.felix_changes(spec, self._ctx(raw))
            elif self.version >= (3, 32) and selector:
                changes = convert_calico.felix_changes(spec, self._ctx(raw))
                try:
                    self._scoped_felix.append((raw, parse_selector(str(selector)), changes))
                except SelectorError as err:
                    # calc/config_batcher.go: "Failed to parse nodeSelector ..., ignoring".
                    self.cluster.warnings.append(
                        f"{raw.file}: FelixConfiguration {raw.name}: spec.nodeSelector "
                        f"{quote(selector)}: {err}; felix applies the object to no node")
            else:
                reads = ("'default', 'node.<nodename>' and ones with a spec.nodeSelector"
                         if self.version >= (3, 32) else "'default' and 'node.<nodename>'")
                self.cluster.warnings.append(
                    f"{raw.file}: FelixConfiguration {raw.name}: ignored (felix "
                    f"v{self.version_text} reads only {reads})")
        self.cluster.felix = config

    def _felix_nodes(self) -> None:
        """Each node's overrides, in felix's order of precedence (config/config_params.go
        SourcesInDescendingOrder): ``node.<name>`` over the selector-scoped object matching the
        node (the oldest by creationTimestamp, then by name: calc/config_batcher.go
        ``MergeSelectorConfigs``) over ``default``, field by field."""
        for name, changes in sorted(self._node_felix.items()):
            if name not in self.cluster.nodes:
                known = ", ".join(sorted(self.cluster.nodes)) or "none"
                self.cluster.warnings.append(
                    f"{changes['origin'].file}: FelixConfiguration node.{name}: no node "
                    f"{quote(name)} in the cluster (nodes: {known}); it applies to no node")
        for name in sorted(self.cluster.nodes):
            labels = self.cluster.nodes[name].labels
            matching = sorted((r for r in self._scoped_felix if r[1].matches(labels)),
                              key=lambda r: (_created(r[0]), r[0].name))
            if len(matching) > 1:
                self.cluster.warnings.append(
                    f"FelixConfigurations {', '.join(r[0].name for r in matching)} all select "
                    f"node {name}: felix uses only the oldest, {matching[0][0].name}")
            changes = {**(matching[0][2] if matching else {}), **self._node_felix.get(name, {})}
            if changes:
                self.cluster.felix_overrides[name] = changes

    def _bgp(self) -> None:
        """The service CIDRs the default BGPConfiguration advertises: felix's service loop
        prevention (ServiceLoopPrevention) blocks traffic to them that no Service claims."""
        for raw in self._of("calico/BGPConfiguration"):
            ctx = self._ctx(raw)
            if raw.name != "default":
                ctx.warn("only the default BGPConfiguration's service CIDRs reach felix; "
                         "ignored")
                continue
            self.cluster.service_loop_cidrs = convert_calico.service_cidrs(raw.spec, ctx)

    def _pools(self) -> None:
        for raw in self._of("calico/IPPool"):
            pool = convert_calico.ippool(raw.name, raw.spec, self._ctx(raw))
            if pool is not None:
                self.cluster.ippools[pool.name] = pool
        if not self.cluster.ippools:
            builtin = Ctx(origin=Origin("<built-in>", "IPPool", "default-ipv4-ippool"),
                          warnings=self.cluster.warnings, calico_version=self.version)
            pool = convert_calico.ippool("default-ipv4-ippool", DEFAULT_POOL, builtin)
            assert pool is not None
            self.cluster.ippools[pool.name] = pool
        pools = sorted(self.cluster.ippools.values(), key=lambda p: p.name)
        for index, pool in enumerate(pools):
            for other in pools[index + 1:]:
                if pool.cidr.overlaps(other.cidr):
                    raise InputError(f"spec.cidr: {pool.cidr} overlaps IPPool {other.name} "
                                     f"({other.cidr})", file=pool.origin.file,
                                     obj=pool.origin.describe())

    def _tiers(self) -> None:
        tiers = self.cluster.tiers
        for raw in self._of("calico/Tier"):
            tiers[raw.name] = convert_calico.tier(raw.name, raw.spec, self._ctx(raw))
        if "default" not in tiers:
            tiers["default"] = BUILTIN_TIERS["default"]

    def _tier_used(self, name: str, raw: RawObject) -> None:
        if name in self.cluster.tiers:
            return
        if name in BUILTIN_TIERS:
            self.cluster.tiers[name] = BUILTIN_TIERS[name]
            return
        raise InputError(f"spec.tier: tier {quote(name)} does not exist (no Tier object "
                         f"declares it)",
                         file=raw.file, obj=f"{raw.kind} {raw.ident}")

    # ------------------------------------------------------------------ namespaces, SAs

    def _namespaces_and_accounts(self) -> None:
        for raw in self._of("Namespace"):
            self._add_namespace(raw.name, raw.labels, raw.origin())
        for raw in self._of("ServiceAccount"):
            self._namespace_ref(raw.namespace or "default", raw)
            sa = ServiceAccount(raw.namespace or "default", raw.name, raw.labels, raw.origin())
            self.cluster.service_accounts[f"{sa.namespace}/{sa.name}"] = sa
        for raw in self.objects:
            if raw.namespace is not None:
                self._namespace_ref(raw.namespace, raw)

    def _add_namespace(self, name: str, labels: dict[str, str], origin: Origin) -> None:
        # The API server labels every namespace with its name (k8s >= 1.21).
        labels = {**labels, "kubernetes.io/metadata.name": name}
        self.cluster.namespaces[name] = Namespace(name, labels, origin)
        key = f"{name}/default"
        if key not in self.cluster.service_accounts:
            self.cluster.service_accounts[key] = ServiceAccount(
                name, "default", {}, Origin("<built-in>", "ServiceAccount", key))

    def _namespace_ref(self, name: str, raw: RawObject) -> None:
        if name in self.cluster.namespaces:
            return
        if name not in BUILTIN_NAMESPACES:
            self.cluster.warnings.append(
                f"{raw.file}: {raw.kind} {raw.ident}: namespace {quote(name)} is not declared; "
                f"assumed to exist with no labels")
        self._add_namespace(name, {}, Origin("<implicit>", "Namespace", name))

    # ------------------------------------------------------------------ nodes

    def _nodes(self) -> None:
        k8s = {raw.name: raw for raw in self._of("Node")}
        calico = {raw.name: raw for raw in self._of("calico/Node")}
        for name in sorted(set(k8s) | set(calico)):
            raw = k8s.get(name) or calico[name]
            self.cluster.nodes[name] = convert_k8s.node(
                k8s[name].doc if name in k8s else None,
                calico[name].doc if name in calico else None, self._ctx(raw))
        if not self.cluster.nodes:
            self._implicit_nodes()

    def _implicit_nodes(self) -> None:
        """No Node objects at all: the nodes pods name (or one ``node-1``) get 10.0.0.x/24."""
        names = sorted({str(raw.spec.get("nodeName") or "") for raw in self._of("Pod")} - {""})
        names = names or ["node-1"]
        for index, name in enumerate(names, start=1):
            self.cluster.nodes[name] = Node(name, IPv4Interface(f"10.0.0.{index}/24"),
                                            {"kubernetes.io/hostname": name},
                                            origin=Origin("<implicit>", "Node", name))
        self.cluster.warnings.append(
            f"no Node objects given; assumed node(s) {', '.join(names)} at 10.0.0.1/24 onwards")

    # ------------------------------------------------------------------ pods and IPAM

    def _pods(self) -> None:
        pods: list[tuple[Pod, bool]] = []
        for raw in sorted(self._of("Pod"), key=lambda r: (r.namespace or "", r.name)):
            converted = convert_k8s.pod(raw.doc, raw.namespace or "default", self.cluster.nodes,
                                        self._ctx(raw))
            if converted is not None:
                pods.append(converted)
        allocator = BlockAllocator(list(self.cluster.ippools.values()), self._pool_selects)
        self._reserve(allocator, pods)
        self._tunnel_addresses(allocator)
        owners: dict = {}                       # pod IP -> key of the pod holding it
        for pod, explicit in pods:
            if not explicit and not pod.host_network:
                try:
                    ip = allocator.assign(pod.node, use=lambda p: True)
                except IPAMExhausted as err:
                    raise InputError(str(err), file=pod.origin.file,
                                     obj=pod.origin.describe()) from None
                pod = replace(pod, ip=ip)
            self._add_pod(pod, owners)

    def _add_pod(self, pod: Pod, owners: dict) -> None:
        if not pod.host_network:
            other = owners.get(pod.ip)
            if other is not None:
                raise InputError(f"pod IP {pod.ip} is already used by pod {other}",
                                 file=pod.origin.file, obj=pod.origin.describe())
            owners[pod.ip] = pod.key
        self.cluster.pods[pod.key] = pod

    def _reserve(self, allocator: BlockAllocator, pods: list[tuple[Pod, bool]]) -> None:
        for pod, explicit in pods:
            if explicit and not pod.host_network:
                allocator.reserve(pod.ip, pod.node)
        for node in self.cluster.nodes.values():
            for ip in (node.ipip_tunnel_address, node.vxlan_tunnel_address,
                       node.wireguard_interface_address):
                if ip is not None:
                    allocator.reserve(ip, node.name)

    def _tunnel_addresses(self, allocator: BlockAllocator) -> None:
        """calico-node's allocateip order per node: WireGuard, then IPIP, then VXLAN."""
        for name in sorted(self.cluster.nodes):
            node = self.cluster.nodes[name]
            changes: dict[str, Any] = {}
            wants = (
                ("wireguard_interface_address",
                 node.wireguard_public_key is not None
                 and self.cluster.felix_for(name).wireguard_enabled,
                 lambda p: True),
                ("ipip_tunnel_address", True, lambda p: p.ipip_mode != "Never"),
                ("vxlan_tunnel_address", True, lambda p: p.vxlan_mode != "Never"),
            )
            for attr, wanted, use in wants:
                if not wanted or getattr(node, attr) is not None:
                    continue
                if not any(use(p) and not p.disabled and self._pool_selects(p, name)
                           for p in self.cluster.ippools.values()):
                    continue
                try:
                    changes[attr] = allocator.assign(name, use=use)
                except IPAMExhausted as err:
                    raise InputError(str(err), file=node.origin.file,
                                     obj=node.origin.describe()) from None
            if changes.get("vxlan_tunnel_address") and node.vxlan_tunnel_mac is None:
                changes["vxlan_tunnel_mac"] = convert_k8s.vxlan_mac_for_node(name)
            if changes:
                self.cluster.nodes[name] = replace(node, **changes)

    def _pool_selects(self, pool: IPPool, node_name: str) -> bool:
        if pool.node_selector.strip() == "all()":
            return True
        return parse_selector(pool.node_selector).matches(self.cluster.nodes[node_name].labels)

    # ------------------------------------------------------------------ profiles, endpoints

    def _profiles(self) -> None:
        profiles = self.cluster.profiles
        for ns in self.cluster.namespaces.values():
            profile = convert_k8s.namespace_profile(ns)
            profiles[profile.name] = profile
        for pod in self.cluster.pods.values():
            key = f"{pod.namespace}/{pod.service_account}"
            if pod.service_account and key not in self.cluster.service_accounts:
                self.cluster.warnings.append(
                    f"{pod.origin.file}: Pod {pod.key}: service account "
                    f"{quote(pod.service_account)} is not declared; assumed to exist with no "
                    f"labels")
                self.cluster.service_accounts[key] = ServiceAccount(
                    pod.namespace, pod.service_account, {}, Origin("<implicit>",
                                                                   "ServiceAccount", key))
        for sa in self.cluster.service_accounts.values():
            profile = convert_k8s.service_account_profile(sa)
            profiles[profile.name] = profile
        for raw in self._of("calico/Profile"):
            if raw.name in profiles and raw.name.startswith(("kns.", "ksa.")):
                continue      # a dump of the profiles libcalico-go derives; derived ones win
            if raw.name in profiles:
                raise InputError("duplicate Profile", file=raw.file, obj=f"Profile {raw.name}")
            profiles[raw.name] = convert_calico.profile(raw.name, raw.spec, self._ctx(raw))

    def _endpoints(self) -> None:
        for pod in sorted(self.cluster.pods.values(), key=lambda p: p.key):
            if pod.host_network:
                continue
            # The CNI plugin names the veth with its node's felix prefix.
            prefix = self.cluster.felix_for(pod.node).interface_prefixes[0]
            self.cluster.endpoints[pod.key] = convert_k8s.workload_endpoint(
                pod, self.cluster.profiles, prefix)

    # ------------------------------------------------------------------ policies

    def _policies(self) -> None:
        out: list[Policy] = []
        for raw in self._of("NetworkPolicy"):
            out.append(convert_k8s.network_policy(raw.name, raw.namespace or "default",
                                                  raw.spec, self._ctx(raw)))
        for raw in self._of("calico/StagedKubernetesNetworkPolicy"):
            if self._staged_delete(raw):
                continue
            out.append(convert_k8s.network_policy(raw.name, raw.namespace or "default", raw.spec,
                                                  self._ctx(raw),
                                                  kind="StagedKubernetesNetworkPolicy"))
        for key in ("NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy",
                    "StagedGlobalNetworkPolicy"):
            for raw in self._of(f"calico/{key}"):
                if key.startswith("Staged") and self._staged_delete(raw):
                    continue
                self._tier_used(raw.spec.get("tier") or "default", raw)
                out.append(convert_calico.calico_policy(key, raw.name, raw.namespace, raw.spec,
                                                        self._ctx(raw)))
        seen: dict[tuple[str, str | None, str], Policy] = {}
        for policy in out:
            ident = (policy.kind, policy.namespace, policy.name)
            if ident in seen:
                raise InputError(f"duplicate policy name {quote(policy.key)} (also defined in "
                                 f"{seen[ident].origin.file})", file=policy.origin.file,
                                 obj=policy.origin.describe())
            seen[ident] = policy
        self.cluster.policies = out

    def _staged_delete(self, raw: RawObject) -> bool:
        if str(raw.spec.get("stagedAction") or "Set") == "Delete":
            self.cluster.warnings.append(f"{raw.file}: {raw.kind} {raw.ident}: stagedAction "
                                         f"Delete, not sent to felix")
            return True
        return False

    # ------------------------------------------------------------------ sets, HEPs, services

    def _network_sets_and_host_endpoints(self) -> None:
        for key, namespaced in (("calico/NetworkSet", True), ("calico/GlobalNetworkSet", False)):
            for raw in self._of(key):
                ns = raw.namespace if namespaced else None
                netset = convert_calico.network_set(raw.name, ns, raw.labels, raw.spec,
                                                    self._ctx(raw))
                if ns is not None:
                    parent = self.cluster.profiles.get(f"kns.{ns}")
                    netset = replace(netset, labels=convert_k8s.inherited_labels(
                        netset.labels, [parent] if parent else []))
                self.cluster.network_sets.append(netset)
        for raw in self._of("calico/HostEndpoint"):
            hep = convert_calico.host_endpoint(raw.name, raw.labels, raw.spec, self._ctx(raw))
            if hep.node not in self.cluster.nodes:
                raise InputError(f"spec.node: node {quote(hep.node)} does not exist", file=raw.file,
                                 obj=f"HostEndpoint {raw.name}")
            missing = [p for p in hep.profiles if p not in self.cluster.profiles]
            if missing:
                self.cluster.warnings.append(f"{raw.file}: HostEndpoint {raw.name}: profile(s) "
                                             f"{', '.join(missing)} not found")
            parents = [self.cluster.profiles[p] for p in hep.profiles if p in self.cluster.profiles]
            self.cluster.host_endpoints.append(
                replace(hep, labels=convert_k8s.inherited_labels(hep.labels, parents)))

    def _services(self) -> None:
        for raw in self._of("Service"):
            service = convert_k8s.service(raw.doc, raw.namespace or "default", self._ctx(raw))
            self.cluster.services[f"{service.namespace}/{service.name}"] = service
        for raw in self._of("EndpointSlice"):
            self.cluster.endpoint_slices.append(
                convert_k8s.endpoint_slice(raw.doc, raw.namespace or "default", self._ctx(raw)))

