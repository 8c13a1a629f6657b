"""Diagrams of the case lifecycle, generated from the chart class (never drawn by hand).

``docs/lifecycle.mmd`` is a committed copy of :func:`mermaid`; a test keeps it current.
"""

from __future__ import annotations

from states.lifecycle import CaseLifecycle


def mermaid() -> str:
    """The statechart as Mermaid ``stateDiagram-v2`` text, with the zh-CN labels."""
    text = f"{CaseLifecycle:mermaid}"
    return text if text.endswith("\n") else text + "\n"


def svg() -> str:
    """The statechart as SVG (needs pydot and Graphviz's ``dot`` on the PATH)."""
    try:
        from statemachine.contrib.diagram import DotGraphMachine
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise RuntimeError("SVG needs the diagrams extra: pip install 'python-statemachine[diagrams]'") from exc
    graph = DotGraphMachine(CaseLifecycle).get_graph()
    try:
        data = graph.create_svg()
    except FileNotFoundError as exc:
        raise RuntimeError("SVG needs Graphviz: apt-get install -y graphviz") from exc
    return data.decode("utf-8") if isinstance(data, bytes) else str(data)
