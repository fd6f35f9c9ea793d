"""The README's "Use" snippet runs as written (a newcomer's first copy-paste)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_use_snippet_runs():
    text = README.read_text()
    use = text[text.index("## Use"):]
    snippet = re.search(r"```python\n(.*?)```", use, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102
    assert namespace["out"].shape == (8, 20, 64)
    assert namespace["h"].shape == (50, 512)
