"""Damaged and crafted files: every reader refuses them with a ValueError (or a
documented subclass), or reads exactly what was written, without a big
allocation. Cases in tests/_corrupt.py; the long run is scripts/fuzz.py."""

from __future__ import annotations

import os

import _corrupt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("PURENN_FUZZ_EXAMPLES", "3"))

#: Crafted files still not refused as they must be: ``(kind, crafted file) ->
#: the defect``; each runs as xfail(strict=True) in test_every_crafted_file_is_refused
#: (a fix makes it XPASS, a failure) and the drawn cases skip it.
KNOWN: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("kind", _corrupt.KINDS)
@settings(
    max_examples=EXAMPLES * 2,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32 - 1))
def test_damaged_files_are_refused_cleanly(kind, seed, monkeypatch, tmp_path):
    monkeypatch.setenv("PURENN_DATA", str(tmp_path / "no-data"))
    case = _corrupt.run_case(kind, seed)
    if (kind, case["damage"].removeprefix("crafted: ")) in KNOWN:
        return  # judged by test_every_crafted_file_is_refused (xfail, strict)
    assert case["verdict"] in ("ok", "clean"), case


def _crafted():
    for kind in _corrupt.KINDS:
        for index, what in enumerate(_corrupt.crafted_names(kind)):
            reason = KNOWN.get((kind, what))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            yield pytest.param(kind, 4 * index, id=f"{kind}: {what}", marks=marks)


@pytest.mark.parametrize(("kind", "seed"), list(_crafted()))
def test_every_crafted_file_is_refused(kind, seed, monkeypatch, tmp_path):
    """Seeds 0, 4, 8, ... are the crafted files, one after another: each is refused
    cleanly or (a valid file of the kind) loads to exactly what it says."""
    monkeypatch.setenv("PURENN_DATA", str(tmp_path / "no-data"))
    case = _corrupt.run_case(kind, seed)
    assert case["verdict"] in ("ok", "clean"), case
