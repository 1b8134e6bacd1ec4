"""The frame every HTML page shares: one self-contained document (inline style and script, no
network needed to view it)."""

from __future__ import annotations

from html import escape

STYLE = """
:root { --ok: #1a7f37; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1280px; padding: 16px 24px 48px; color: #1f2328; }
h1 { font-size: 20px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 24px 0 8px; }
h3 { font-size: 15px; margin: 16px 0 6px; }
code, pre, .mono { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
pre { background: var(--bg); border: 1px solid var(--line); padding: 8px 10px;
      overflow-x: auto; border-radius: 6px; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff;
         font-weight: 600; }
.badge.allowed { background: var(--ok); } .badge.dropped { background: var(--bad); }
.path { display: flex; flex-wrap: wrap; align-items: stretch; gap: 4px; margin: 12px 0; }
.arrow { align-self: center; color: var(--muted); font-size: 18px; }
.box { border: 1px solid var(--line); border-radius: 8px; padding: 6px 10px; min-width: 120px;
       max-width: 300px; background: #fff; text-decoration: none; color: inherit; }
.box .kind { font-size: 11px; text-transform: uppercase; letter-spacing: .04em;
             color: var(--muted); }
.box .title { font-weight: 600; word-break: break-all; }
.box .detail { font-size: 12px; color: var(--muted); word-break: break-all; }
.box.endpoint { background: #ddf4ff; } .box.veth { background: #fff8c5; }
.box.tunnel { background: #fbefff; } .box.underlay { background: #eaeef2; }
.box.node { background: #fff; cursor: pointer; border-width: 2px; }
.box.node:hover { border-color: #0969da; }
.box.verdict-drop { border: 3px solid var(--bad); box-shadow: 0 0 0 3px #ffebe9; }
.box.verdict-deliver { border: 3px solid var(--ok); box-shadow: 0 0 0 3px #dafbe1; }
.chips { display: flex; flex-wrap: wrap; gap: 2px; margin-top: 4px; }
.chip { font-size: 10px; border-radius: 4px; padding: 0 4px; background: var(--bg);
        border: 1px solid var(--line); white-space: nowrap; }
.chip.drop { background: #ffebe9; border-color: var(--bad); }
details.hop { border: 1px solid var(--line); border-radius: 8px; margin: 6px 0; }
details.hop > summary { padding: 6px 10px; cursor: pointer; background: var(--bg);
                        border-radius: 8px; }
details.hop[open] > summary { border-bottom: 1px solid var(--line); border-radius: 8px 8px 0 0; }
.stage { padding: 4px 12px; }
.stage-head { font-weight: 600; }
table.rules { border-collapse: collapse; width: 100%; margin: 4px 0 8px; }
table.rules td, table.rules th { border-top: 1px solid var(--line); padding: 2px 6px;
                                 vertical-align: top; text-align: left; }
table.rules th { font-size: 11px; color: var(--muted); font-weight: 600; }
tr.deciding { background: #fff8c5; }
tr.deciding td:first-child { border-left: 3px solid #bf8700; }
.why { border-left: 4px solid #0969da; padding: 4px 12px; background: #ddf4ff; }
.fix { border-left: 4px solid var(--ok); padding: 4px 12px; background: #dafbe1; }
.heat { border-collapse: collapse; }
.heat td, .heat th { padding: 0; }
.heat a.cell { display: block; width: var(--cell); height: var(--cell); }
.heat a.cell.y { background: #2da44e; } .heat a.cell.n { background: #cf222e; }
.heat a.cell:hover, .heat a.cell:focus { outline: 2px solid #0969da; }
.heat th.ns-row { writing-mode: vertical-rl; transform: rotate(180deg); font-size: 11px;
                  border: 1px solid var(--line); background: var(--bg); }
.heat th.ns-col { font-size: 11px; border: 1px solid var(--line); background: var(--bg); }
.heat td.sep-l { border-left: 2px solid #fff; } .heat tr.sep-t td { border-top: 2px solid #fff; }
.pair { display: none; } .pair:target { display: block; }
"""

OPEN_FROM_DIAGRAM = """
document.querySelectorAll('a.box.node').forEach(function (box) {
  box.addEventListener('click', function () {
    var hop = document.getElementById(box.getAttribute('href').slice(1));
    if (hop) { hop.open = true; }
  });
});
"""


def page(title: str, body: str, *, script: str = OPEN_FROM_DIAGRAM) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{body}\n<script>{script}</script>\n</body>\n</html>\n")


def slug(text: str) -> str:
    """An id attribute's value made from any text."""
    return "".join(ch if ch.isalnum() else "-" for ch in text).strip("-").lower() or "x"
