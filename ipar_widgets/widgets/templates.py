"""HTML templates and CSS for every picture we draw, kept apart from the code that fills them.

Colours and fonts come from JupyterLab's CSS variables, so the light and dark themes both
apply; each variable has a fallback for renderers without them (nbconvert, GitHub, VS Code).
Every class starts with ``ipar-`` so nothing leaks into the page.
"""

from __future__ import annotations

CSS = """
.ipar-box { font-family: var(--jp-ui-font-family, sans-serif); font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, #222); line-height: 1.45; }
.ipar-head { margin: 2px 0; }
.ipar-head .ipar-fname { font-family: var(--jp-code-font-family, monospace); font-weight: 600; }
.ipar-muted { color: var(--jp-ui-font-color2, #666); }
.ipar-failed { color: var(--jp-error-color1, #d32f2f); font-weight: 600; }
.ipar-aborted { color: var(--jp-warn-color1, #e65100); }
.ipar-ok { color: var(--jp-success-color1, #388e3c); }
.ipar-state { border: 1px solid currentColor; border-radius: 3px; padding: 0 4px;
  font-size: 0.9em; color: var(--jp-ui-font-color2, #555); }
.ipar-state.ipar-ok { color: var(--jp-success-color1, #388e3c); }
.ipar-state.ipar-failed { color: var(--jp-error-color1, #d32f2f); }
.ipar-state.ipar-aborted { color: var(--jp-warn-color1, #e65100); }
table.ipar-table { border-collapse: collapse; margin: 4px 0; font-variant-numeric: tabular-nums; }
table.ipar-table th, table.ipar-table td { padding: 1px 10px 1px 4px; text-align: right;
  border-bottom: 1px solid var(--jp-border-color2, #ddd); white-space: nowrap; }
table.ipar-table th { font-weight: 600; color: var(--jp-ui-font-color2, #555); }
table.ipar-table td.ipar-text, table.ipar-table th.ipar-text { text-align: left; }
table.ipar-table td.ipar-stdout { font-family: var(--jp-code-font-family, monospace);
  max-width: 40em; overflow: hidden; text-overflow: ellipsis; color: var(--jp-ui-font-color2, #555); }
table.ipar-table tr.ipar-straggler td { background: var(--jp-warn-color3, #ffe0b2); }
table.ipar-table tr.ipar-dead td { color: var(--jp-ui-font-color2, #777); }
table.ipar-table tr.ipar-dead td.ipar-failed { color: var(--jp-error-color1, #d32f2f); }
.ipar-costs { color: var(--jp-ui-font-color2, #666); margin: 2px 0 2px 4px; }
.ipar-tb { font-family: var(--jp-code-font-family, monospace); font-size: var(--jp-code-font-size, 12px);
  white-space: pre; overflow-x: auto; margin: 4px 0; padding: 4px;
  background: var(--jp-rendermime-error-background, #fdd); }
.ipar-args ul { margin: 2px 0 4px 0; padding-left: 1.5em; }
.ipar-args code { font-family: var(--jp-code-font-family, monospace); white-space: pre-wrap;
  word-break: break-all; }
.ipar-dot { display: inline-block; width: 0.7em; height: 0.7em; border-radius: 50%; margin-right: 4px;
  vertical-align: baseline; }
.ipar-dot.ipar-busy { background: var(--jp-warn-color1, #f57c00); }
.ipar-dot.ipar-idle { background: var(--jp-success-color1, #388e3c); }
.ipar-timeline text { font-family: var(--jp-ui-font-family, sans-serif); font-size: 11px;
  fill: var(--jp-ui-font-color1, #222); }
.ipar-timeline .ipar-axis { stroke: var(--jp-border-color1, #bbb); stroke-width: 1; }
.ipar-timeline .ipar-wait { fill: var(--jp-layout-color3, #ccc); opacity: 0.55; }
.ipar-timeline .ipar-bar-ok { fill: var(--jp-brand-color1, #1976d2); }
.ipar-timeline .ipar-bar-error { fill: var(--jp-error-color1, #d32f2f); }
.ipar-timeline .ipar-bar-aborted { fill: var(--jp-warn-color1, #f57c00); }
.ipar-timeline .ipar-bar-running { fill: var(--jp-brand-color3, #90caf9); }
"""

STYLE_TAG = "<style>" + CSS + "</style>"

#: the progress header: name, state, counts, then times
HEAD = (
    '<div class="ipar-head"><span class="ipar-fname">{fname}</span> '
    '<span class="ipar-state {state_class}">{state}</span> '
    "{done}/{total} items done{counts}</div>"
    '<div class="ipar-head ipar-muted">{times}</div>'
)

TABLE = '<table class="ipar-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'

TRACEBACK = '<div class="ipar-tb">{traceback}</div>'

#: the failure groups (widgets/html.py failure_groups_html): one collapsed section each
FAILURE_GROUPS = '<div class="ipar-failure-groups">{sections}</div>'
FAILURE_GROUP = (
    '<details class="ipar-failure"><summary class="ipar-failed">{title}</summary>{body}</details>'
)
FAILURE_GROUP_BODY = '<div class="ipar-muted">{first}</div>' + TRACEBACK + "{args}"
FAILURE_ARGS = (
    '<div class="ipar-args"><span class="ipar-muted">{title}:</span><ul>{items}</ul></div>'
)
FAILURE_ARG = "<li><code>{arg}</code></li>"

BOX = '<div class="ipar-box">{body}</div>'
