"""The committed diagram is generated from the chart and kept current."""

import shutil
from pathlib import Path

import pytest

from states.diagram import mermaid, svg
from states.lifecycle import EVENT_LABELS, LEAF_STATE_IDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "lifecycle.mmd"


def test_committed_mermaid_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == mermaid(), "run: jointcase diagram > docs/lifecycle.mmd"


def test_mermaid_names_every_state_with_zh_labels() -> None:
    text = mermaid()
    assert text.startswith("stateDiagram-v2")
    for state in LEAF_STATE_IDS:
        assert f" as {state}" in text, state
    assert "移送公安机关" in text and EVENT_LABELS["transfer_to_police"][0] == "移送公安机关"


def test_svg_renders() -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not installed (.ci/run installs it: apt-get install -y graphviz)")
    data = svg()
    assert "<svg" in data and "公安审查" in data
