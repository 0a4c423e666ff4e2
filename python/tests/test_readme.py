"""The README's Python example runs as written."""

import pathlib
import re
import subprocess
import sys

from conftest import MINILM, REPO, need


def example(name: str) -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- example: %s -->\n```\w+\n(.*?)```" % re.escape(name), text, re.S)
    assert m, "README.md has no example %r" % name
    return m.group(1)


def test_python_example(tmp_path: pathlib.Path):
    need(MINILM)
    code = example("python")
    assert len([l for l in code.splitlines() if l.strip()]) <= 11
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Hello, MagicFS\n b'ada' 15\n['hello.txt'] docs/hello.txt\n", out.stdout
    assert (tmp_path / "tree.json").is_file()
