"""docs/tutorial.md runs as written: every ```python block, in order, in one
namespace, in a temporary working folder; the summary table the page shows is
the one the code prints, and the figures the page promises are written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks(lang: str) -> list[tuple[int, str]]:
    text = PAGE.read_text()
    return [
        (text.count("\n", 0, m.start(2)) + 1, m.group(2))
        for m in _FENCE.finditer(text)
        if m.group(1) == lang
    ]


@pytest.mark.slow
def test_every_tutorial_block_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PURENN_DATA", raising=False)  # pendigits: the bundled copy
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    blocks = _blocks("python")
    assert len(blocks) >= 6, "the tutorial lost its steps"
    namespace: dict = {"__name__": "tutorial"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for line, code in blocks:
            # pad with blank lines so a traceback points at the page's own line
            exec(compile("\n" * (line - 1) + code, str(PAGE), "exec"), namespace)
    printed = out.getvalue()
    (summary,) = [code for _, code in _blocks("text") if code.startswith("Network:")]
    assert summary.strip() in printed
    for name in ("xor_boundary.png", "xor_boundary.gif", "spiral_boundary.png",
                 "spiral_diagnostics.png", "spiral.npz", "pendigits_w.png"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "xor_snapshots" / "snapshot_0040.npz").is_file()
