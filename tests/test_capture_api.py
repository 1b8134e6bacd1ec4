"""The capture package's public names, pinned; and the layer rule: the dataplane never imports
it."""

from __future__ import annotations

import ast
from pathlib import Path

import tracer.capture

ROOT = Path(__file__).resolve().parent.parent / "tracer"


def test_exported_members():
    assert sorted(tracer.capture.__all__) == sorted([
        "read_capture", "Capture", "CAPTURE_DTYPE", "SKIP_DTYPE", "Reason", "REASONS", "Skip",
        "SKIPS", "Tunnel", "category", "read_flow_logs", "FLOW_COLUMNS", "write_pcapng",
        "Frame", "LINKTYPE_RAW", "KeyLog", "parse_keylog", "read_keylog"])
    for name in tracer.capture.__all__:
        assert getattr(tracer.capture, name) is not None


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "tracer":
            found.update(f"tracer.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_layers():
    for path in (ROOT / "dataplane").glob("*.py"):
        assert not any(m.startswith("tracer.capture") for m in imports(path)), path
    allowed = ("tracer.capture", "tracer.dataplane.batch", "tracer.dataplane.packet",
               "tracer.encap", "tracer.protocols", "tracer.errors")
    for path in (ROOT / "capture").glob("*.py"):
        for module in imports(path):
            if module.startswith("tracer"):
                assert module.startswith(allowed), (path.name, module)


def test_every_reason_has_a_category_and_text():
    from tracer.capture import REASONS, SKIPS, Reason, Skip, category
    assert set(REASONS) == set(Reason) and set(SKIPS) == set(Skip)
    assert {category(r) for r in Reason} == {"", "malformed", "fragment", "unreadable"}


def test_module_entry_point_summarises_and_fails_with_status_2(tmp_path):
    import subprocess
    import sys

    good = Path(__file__).resolve().parent / "data" / "captures" / "tcp-handshake.pcap"
    done = subprocess.run([sys.executable, "-m", "tracer.capture", str(good)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert done.stdout.splitlines()[0] == f"{good}: 18 frames, 10 packets"
    assert "  skipped: 2 ARP" in done.stdout
    bad = tmp_path / "notes.pcap"
    bad.write_text("not a capture\n")
    done = subprocess.run([sys.executable, "-m", "tracer.capture", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr == (f"calico-trace: error: {bad}: not a pcap or pcapng capture "
                           "(file starts with 6e6f7420)\n")
