"""docs/extending.md runs as written.

Every ```python block of the page is run: the one that starts with
``# my_extensions.py`` is written to a temporary folder as ``my_extensions.py``
and imported from there; the others run in order, in one namespace, with that
folder as the working directory (so the page's relative paths land there).
Then fresh interpreters check what the page says about loading: the saved
checkpoint loads after ``import my_extensions``, and without it fails with the
error the page shows.

The page's classes are registered into copies of purenn's registries, so they
do not leak into other test modules.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import purenn
import purenn.activations
import purenn.base
import purenn.checkpoint
import purenn.losses

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "extending.md"
MODULE_MARK = "# my_extensions.py"
CHECKPOINT = "model.npz"  # the file the page saves and loads

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks(text: str, lang: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of every fenced block of ``lang``."""
    return [
        (text.count("\n", 0, m.start(2)) + 1, m.group(2))
        for m in _FENCE.finditer(text)
        if m.group(1) == lang
    ]


def _module_block(text: str) -> str:
    found = [code for _, code in _blocks(text, "python") if code.startswith(MODULE_MARK)]
    assert len(found) == 1, f"expected one block starting with {MODULE_MARK!r}; got {len(found)}"
    return found[0]


def _documented_error(text: str) -> str:
    found = [code.strip() for _, code in _blocks(text, "text") if "unknown layer type" in code]
    assert len(found) == 1, f"expected one text block with the load error; got {len(found)}"
    return found[0]


def _documented_outputs(text: str) -> list[tuple[int, int, str]]:
    """``(text block line, python block line, text)`` for every ```text block that
    follows a paragraph ending in "prints:", paired with the python block before it."""
    python = _blocks(text, "python")
    lines = text.splitlines()
    pairs = []
    for line, code in _blocks(text, "text"):
        before = [ln for ln in lines[: line - 2] if ln.strip()]  # line - 1 is the fence
        if before and before[-1].rstrip().endswith("prints:"):
            source = max(start for start, _ in python if start < line)
            pairs.append((line, source, code))
    return pairs


def _rounded(text: str) -> str:
    """``text`` with every decimal number rounded to 3 significant digits (the last
    digits of a finite difference are round-off, which may differ between machines)."""
    return re.sub(r"-?\d+\.\d+(?:e[-+]?\d+)?", lambda m: f"{float(m.group()):.3g}", text)


def _elide_registered(message: str) -> str:
    """The message without its list of registered layers (which grows with purenn)."""
    return re.sub(r"registered: [^.]*\.", "registered: ....", message)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):
    """Run the page; yield ``(folder, namespace)``."""
    text = PAGE.read_text(encoding="utf-8")
    folder = tmp_path_factory.mktemp("extending")
    (folder / "my_extensions.py").write_text(_module_block(text), encoding="utf-8")
    namespace: dict = {"__name__": "extending_md"}
    registries = (  # the page's classes must not outlive it: the tables, restored on exit
        purenn.base._LAYERS._classes,
        purenn.activations._REGISTRY,
        purenn.losses._LOSSES._classes,
        purenn.checkpoint._RECORDS._classes,
    )
    with contextlib.ExitStack() as stack:
        for registry in registries:  # restored to their old contents on exit
            stack.enter_context(mock.patch.dict(registry))
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.syspath_prepend(str(folder))
        mp.chdir(folder)
        mp.delitem(sys.modules, "my_extensions", raising=False)
        stack.callback(sys.modules.pop, "my_extensions", None)
        printed: dict[int, str] = {}  # first line of a block -> what it printed
        for line, code in _blocks(text, "python"):
            if code.startswith(MODULE_MARK):
                continue
            # padded, so that tracebacks give the page's own line numbers
            compiled = compile("\n" * (line - 1) + code, str(PAGE), "exec")
            with contextlib.redirect_stdout(io.StringIO()) as out:
                exec(compiled, namespace)
            printed[line] = out.getvalue()
            sys.stdout.write(printed[line])  # still shown by pytest on failure
        namespace["__printed__"] = printed
        yield folder, namespace


def _python(folder: Path, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a fresh interpreter in ``folder``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_block_is_python_or_text():
    # a block fenced as ```py or ```Python would be skipped silently by the runner
    text = PAGE.read_text(encoding="utf-8")
    langs = {m.group(1) for m in _FENCE.finditer(text)}
    assert langs <= {"python", "text"}, f"unexpected code fences: {langs - {'python', 'text'}}"
    assert text.count("```") == 2 * len(_FENCE.findall(text)), "an unclosed code fence"
    assert len(_blocks(text, "python")) >= 6


def test_page_runs_and_trains(page):
    folder, ns = page
    import my_extensions as ext

    spec = ns["spec"]
    # the page's classes are the module's, registered as purenn knows them
    assert purenn.base.layer_class("Gate") is ext.Gate
    assert purenn.losses.loss_class("LogCosh") is ext.LogCosh
    assert purenn.activations.get_activation("mish").forward is ext.mish
    assert isinstance(spec.loss, ext.LogCosh)
    assert purenn.Network.from_json(spec.to_json()) == spec
    # training did something, and the checkpoints the page names exist
    assert ns["history"]["epoch"] == [1, 2, 3, 4, 5]
    assert ns["clf_history"]["val_accuracy"][-1] > 0.6
    assert (folder / CHECKPOINT).is_file()
    assert (folder / "run" / "last.npz").is_file()


def test_printed_output_is_as_documented(page):
    _, ns = page
    pairs = _documented_outputs(PAGE.read_text(encoding="utf-8"))
    assert len(pairs) >= 2
    for text_line, python_line, documented in pairs:
        actual = ns["__printed__"][python_line]
        assert _rounded(actual.strip()) == _rounded(documented.strip()), (
            f"docs/extending.md:{text_line} shows what the block at line {python_line} prints, "
            f"but it printed:\n{actual}"
        )


def test_saved_checkpoint_loads_in_a_fresh_process_after_the_import(page):
    folder, ns = page
    np.save(folder / "x_val.npy", ns["x_val"])
    result = _python(
        folder,
        "import numpy as np, purenn, my_extensions\n"
        f"ck = purenn.load({CHECKPOINT!r})\n"
        "np.save('out.npy', purenn.forward(ck.params, np.load('x_val.npy')))\n",
    )
    assert result.returncode == 0, result.stderr
    expected = purenn.forward(ns["params"], ns["x_val"])
    np.testing.assert_allclose(np.load(folder / "out.npy"), expected, rtol=1e-6, atol=1e-7)


def test_without_the_import_loading_fails_as_documented(page):
    folder, ns = page
    documented = _documented_error(PAGE.read_text(encoding="utf-8"))
    (folder / "spec.json").write_text(ns["spec"].to_json(), encoding="utf-8")
    script = (
        "import json, purenn\n"
        "errors = []\n"
        f"for attempt in (lambda: purenn.load({CHECKPOINT!r}),\n"
        "                lambda: purenn.Network.from_json(open('spec.json').read())):\n"
        "    try:\n"
        "        attempt()\n"
        "    except ValueError as err:\n"
        "        errors.append(f'ValueError: {err}')\n"
        "    else:\n"
        "        errors.append(None)\n"
        "print(json.dumps(errors))\n"
    )
    result = _python(folder, script)
    assert result.returncode == 0, result.stderr
    load_error, json_error = json.loads(result.stdout)
    assert load_error is not None, "load succeeded without importing my_extensions"
    assert _elide_registered(load_error) == _elide_registered(documented)
    assert json_error is not None and "unknown layer type 'Gate'" in json_error
    assert "import the module" in json_error
