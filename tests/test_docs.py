"""The documentation as a user meets it: every code block in README.md and
docs/ runs as written, the site builds with warnings as errors, and the API
reference lists every public name.

A block may be left out only with a reason, in a comment on the line before
its fence: ``<!-- docs-test: skip (why) -->``. Blocks in a file run in order,
Python blocks in one namespace and every block in one working folder, so a
block may use what an earlier one made. Bash blocks run with the
environment's ``bin/`` first on PATH (as ``source .venv/bin/activate`` puts
it) from a scratch folder that holds links to the repository's examples/ and
benchmarks/.
"""

import importlib
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
API_PAGES = ROOT / "docs" / "api"
PUBLIC_MODULES = ("sparse_deep", "sparse_deep.network", "sparse_deep.io", "sparse_deep.metrics",
                  "sparse_deep.model_selection", "sparse_deep.pipeline", "sparse_deep.datasets",
                  "sparse_deep.plotting", "sparse_deep.distributed",
                  "sparse_deep.core.activations", "sparse_deep.core.errors",
                  "sparse_deep.core.optimizers")
RUN_LANGUAGES = ("python", "bash", "json")

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_SKIP = re.compile(r"<!-- docs-test: skip \((.+)\) -->\s*$")


def code_blocks(path):
    """``(language, code, line, skip reason or None)`` of each fenced block."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        blocks.append((match.group(1), match.group(2), line, skip.group(1) if skip else None))
    return blocks


def _scratch_folder(tmp_path):
    """A working folder where the docs' relative paths resolve."""
    for name in ("examples", "benchmarks"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _run_bash(code, where, cwd, env):
    # -e as a user's shell would stop at a failing line; no pipefail: a
    # command cut short by `| head` exits 141 (SIGPIPE), as documented.
    result = subprocess.run(["bash", "-eu", "-c", code], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)
    trouble = result.returncode != 0 or any(
        sign in result.stderr for sign in ("Traceback", "Broken pipe", "error:"))
    assert not trouble, (
        f"{where} failed with status {result.returncode}:\n{code}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}")


def _run_python(code, where, namespace):
    try:
        exec(compile(code, where, "exec"), namespace)
    except Exception as error:
        raise AssertionError(f"{where} failed: {type(error).__name__}: {error}\n{code}") from error


def runnable_blocks(path):
    return [block for block in code_blocks(path)
            if block[0] in RUN_LANGUAGES and block[3] is None]


@pytest.mark.parametrize("path", [p for p in DOC_FILES if runnable_blocks(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_runs_as_written(path, tmp_path, monkeypatch, shared_data):
    blocks = runnable_blocks(path)
    data = shared_data
    cwd = _scratch_folder(tmp_path)
    env = dict(os.environ, SPARSE_DEEP_DATA=str(data),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("SPARSE_DEEP_DATA", str(data))
    namespace = {"__name__": "__docs__"}
    for language, code, line, _ in blocks:
        where = f"{path.relative_to(ROOT)}:{line}"
        if language == "bash":
            _run_bash(code, where, cwd, env)
        elif language == "python":
            _run_python(code, where, namespace)
        else:
            json.loads(code)


def test_every_skipped_block_says_why_and_nothing_else_hides():
    """A skip needs a reason; a fence with no language would escape the
    runner, so every block names one."""
    for path in DOC_FILES:
        for language, _, line, reason in code_blocks(path):
            assert language, f"{path.name}:{line}: a code block without a language"
            assert reason is None or len(reason) > 10, f"{path.name}:{line}: say why it is skipped"


def _setup_commands():
    readme = code_blocks(ROOT / "README.md")
    set_up = [code.strip() for language, code, _, reason in readme
              if language == "bash" and reason and ".ci/run runs it" in reason]
    return set_up


def test_ci_runs_the_readme_setup_commands_verbatim():
    """The README's two set-up blocks are not run here (one installs, one is
    this test suite); CI runs them, so they must be exactly .ci/run's lines."""
    set_up = _setup_commands()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert len(set_up) == 2
    assert all(command in ci_lines for command in set_up), (set_up, ci_lines)


def _documented_objects():
    """The objects the ``::: module.name`` lines of docs/api/ render."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in API_PAGES.glob("*.md"))
    objects = []
    for path in re.findall(r"^::: ([\w.]+)$", text, re.MULTILINE):
        module, _, name = path.rpartition(".")
        objects.append(getattr(importlib.import_module(module), name))
    return objects


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_the_api_reference_lists_every_public_name(module):
    """Each name in a public module's __all__ has its entry (a re-exported one,
    such as ``sparse_deep.save_model``, under the module that defines it; a
    public submodule by its own names)."""
    documented = _documented_objects()
    imported = importlib.import_module(module)
    missing = []
    for name in imported.__all__:
        value = getattr(imported, name)
        if inspect.ismodule(value):
            if value.__name__ not in PUBLIC_MODULES:
                missing.append(name)
        elif not any(value is entry for entry in documented):
            missing.append(name)
    assert not missing, f"docs/api/ lacks {module}: {', '.join(missing)}"


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    command = [str(mkdocs)] if mkdocs.exists() else [sys.executable, "-m", "mkdocs"]
    result = subprocess.run([*command, "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    for page in ("index.html", "api/estimators/index.html", "dsstne/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    reference = (tmp_path / "site" / "api" / "estimators" / "index.html").read_text()
    assert "SparseAutoencoderRecommender" in reference and "recommend" in reference
