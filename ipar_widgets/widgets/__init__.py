"""Pictures of parallel jobs for notebooks: the live progress widget, the static HTML and
text snapshots, the rich reprs of clients and results, and the task timeline.

- :mod:`.progress`: the live widget (``wait_interactive`` in a kernel, ``ar.display()``);
- :mod:`.loop`: the one update loop all live widgets share, and its message budget;
- :mod:`.clicks`: how a button's click reaches the kernel while a cell blocks it;
- :mod:`.html` and :mod:`.templates`: snapshots as HTML and text, and the reprs;
- :mod:`.timeline`: ``ar.timeline()``, a Gantt chart as inline SVG;
- :mod:`.stacks`: where running tasks are (``rc.stacks()``, the "Where is it stuck?" button).
"""
