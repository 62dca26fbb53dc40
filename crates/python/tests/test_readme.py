"""README's "From Python" section: every python block runs, in order, in one folder holding a
generated data/ folder (except a block marked not-run, which names why)."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

import shardfeed
from conftest import need


def blocks():
    readme = pathlib.Path(os.environ.get(
        "SHARDFEED_README", pathlib.Path(__file__).parents[3] / "README.md"))
    text = readme.read_text()
    section = text.split("## From Python\n", 1)[1].split("\n## ", 1)[0]
    found = []
    for match in re.finditer(r"(<!-- not run in CI: (.*?) -->\n)?```python\n(.*?)```", section, re.S):
        found.append((match.group(2), match.group(3)))
    return found


def test_the_readme_python_blocks_run(tmp_path):
    found = blocks()
    runnable = [code for why, code in found if why is None]
    not_run = [why for why, _ in found if why is not None]
    assert len(runnable) >= 3
    assert len(not_run) == 3 and "PyTorch" in not_run[0] and "PyTorch" in not_run[1] and "pyspark" in not_run[2], not_run
    print(f"\nREADME: {len(runnable)} python blocks run; NOT RUN: {not_run}")
    needs_jax = any("import jax" in code for code in runnable)
    if needs_jax:
        import importlib.util
        need(importlib.util.find_spec("jax") is not None, "JAX for the README's JAX block")
    if any("import ray" in code for code in runnable):
        import importlib.util
        need(importlib.util.find_spec("ray") is not None, "Ray for the README's Ray block")
    shardfeed.synthetic(tmp_path / "data", train=96, min_side=160, max_side=220, seed=1)
    for i, code in enumerate(runnable):
        result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"README python block {i + 1}:\n{code}\n{result.stderr}"
