"""``matrix --output html``: the reachability matrix as a heatmap grouped by namespace.

Rows are sources, columns destinations, both sorted by namespace with a header band per
namespace, so 200 pods still read as blocks (cells shrink to 4 px; names are in each cell's
tooltip, filled in by the page's script). Each cell is a link: clicking it shows the pair, its verdict and the command that
traces it, and for small matrices the pair's trace itself, embedded in the page.
"""

from __future__ import annotations

import json
from html import escape
from itertools import groupby

from tracer.policy.evaluate import protocol_name
from tracer.policy.matrix import ReachabilityMatrix
from tracer.render.html_page import page

PANEL_SCRIPT = """
var PODS = JSON.parse(document.getElementById('pods').textContent);
var TRACES = JSON.parse(document.getElementById('traces').textContent);
var panel = document.getElementById('pair');
function pair(cell) {
  var ij = cell.getAttribute('href').slice(6).split('-');
  return [+ij[0], +ij[1], cell.classList.contains('y')];
}
function show(cell) {
  var p = pair(cell), i = p[0], j = p[1], yes = p[2];
  var cmd = panel.dataset.command.replace('SRC', PODS[i]).replace('DST', PODS[j]);
  panel.querySelector('.what').textContent = PODS[i] + ' \\u2192 ' + PODS[j] + ': ' +
      (yes ? 'allowed' : 'denied');
  panel.querySelector('.cmd').textContent = cmd;
  var trace = i === j ? 'A pod to itself: the packet never leaves the pod.' :
      (TRACES[i + '-' + j] || '');
  var box = panel.querySelector('.trace');
  box.textContent = trace;
  box.hidden = !trace;
  panel.hidden = false;
}
document.querySelector('table.heat').addEventListener('click', function (event) {
  if (event.target.classList.contains('cell')) { show(event.target); }
});
document.querySelector('table.heat').addEventListener('mouseover', function (event) {
  var cell = event.target;
  if (cell.classList.contains('cell') && !cell.title) {
    var p = pair(cell);
    cell.title = PODS[p[0]] + ' \u2192 ' + PODS[p[1]] + ': ' + (p[2] ? 'allowed' : 'denied');
  }
});
if (location.hash.indexOf('#pair-') === 0) {
  var cell = document.querySelector('a.cell[href="' + location.hash + '"]');
  if (cell) { show(cell); }
}
"""


def _json_script(name: str, value) -> str:
    text = json.dumps(value).replace("</", "<\\/")       # cannot close the script element
    return f"<script type=\"application/json\" id=\"{name}\">{text}</script>"


def cell_size(count: int) -> int:
    """Pixels per cell: the whole grid fits about 800 px, never under 4 px or over 24."""
    return max(4, min(24, 800 // max(count, 1)))


def render_matrix_html(result: ReachabilityMatrix, *, manifests: str,
                       traces: dict[tuple[int, int], str] | None = None) -> str:
    """``manifests``: the -f arguments, for the command shown per pair; ``traces``: the text
    trace of each pair (i, j) to embed, when the caller traced them."""
    pods = result.pods
    count = len(pods)
    probe = protocol_name(result.probe.protocol)
    if result.probe.port is not None:
        probe += f" port {result.probe.port}"
    allowed = int(result.allowed.sum())
    groups = [(ns, len(list(members))) for ns, members in
              groupby(pods, key=lambda key: key.split("/", 1)[0])]
    starts = set()
    at = 0
    for _, size in groups:
        starts.add(at)
        at += size
    show_names = count <= 60
    out = [f"<h1>Reachability for {escape(probe)}</h1>",
           f"<p class=\"muted\">Row: from, column: to. Green: allowed, red: denied. "
           f"{allowed} of {count * count} ordered pairs allowed ({count} pods in "
           f"{len(groups)} namespaces, {result.classes} policy classes). Click a cell for its "
           f"trace.</p>",
           f"<table class=\"heat\" style=\"--cell: {cell_size(count)}px\">",
           "<tr><th></th>" + ("<th></th>" if show_names else "") + "".join(
               f"<th class=\"ns-col\" colspan=\"{size}\" title=\"{escape(ns)}\">"
               f"{escape(ns) if size * cell_size(count) >= 16 else ''}</th>"
               for ns, size in groups) + "</tr>"]
    row_group = iter(groups)
    for i, src in enumerate(pods):
        cells = []
        if i in starts:
            ns, size = next(row_group)
            cells.append(f"<th class=\"ns-row\" rowspan=\"{size}\" title=\"{escape(ns)}\">"
                         f"{escape(ns) if size * cell_size(count) >= 16 else ''}</th>")
        if show_names:
            cells.append(f"<th class=\"mono\" style=\"text-align:right;font-weight:normal;"
                         f"padding-right:4px\">{escape(src)}</th>")
        for j, dst in enumerate(pods):
            yes = bool(result.allowed[i, j])
            sep = j in starts and j
            # Kept small (40,000 cells at 200 pods): names and tooltips come from the script.
            td = "<td class=\"sep-l\">" if sep else "<td>"
            cells.append(f"{td}<a class=\"cell {'y' if yes else 'n'}\" "
                         f"href=\"#pair-{i}-{j}\"></a></td>")
        tr_class = " class=\"sep-t\"" if i in starts and i else ""
        out.append(f"<tr{tr_class}>" + "".join(cells) + "</tr>")
    out.append("</table>")
    command = (f"calico-trace packet {manifests} --from SRC --to DST --protocol "
               f"{protocol_name(result.probe.protocol).lower()}"
               + (f" --port {result.probe.port}" if result.probe.port is not None else "")
               + " --output html > trace.html")
    embedded = {f"{i}-{j}": text for (i, j), text in sorted((traces or {}).items())}
    out += [f"<div id=\"pair\" class=\"box\" hidden data-command=\"{escape(command)}\" "
            "style=\"max-width:none;margin-top:12px\">",
            "<div class=\"title what\"></div><div>Trace it:</div><pre class=\"cmd\"></pre>",
            "<pre class=\"trace\"></pre></div>",
            _json_script("pods", list(pods)), _json_script("traces", embedded)]
    return page(f"Reachability for {probe}", "\n".join(out), script=PANEL_SCRIPT)
