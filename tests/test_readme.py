"""The README is the user's manual: every ``fastgan.<name>`` it writes resolves after a plain ``import fastgan``,
and every option of a command it lists is an option of that command."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_dotted_name_resolves_after_import_fastgan():
    modules_run = set(re.findall(r"-m (fastgan(?:\.\w+)+)", README))  # `python -m fastgan.kernels.aot`
    names = sorted(set(re.findall(r"\bfastgan(?:\.[A-Za-z_]\w*)+", README)) - modules_run - {"fastgan._C"})
    assert len(names) > 20
    code = ("import fastgan, sys\nbad = []\nfor name in sys.argv[1:]:\n    obj = fastgan\n"
            "    for part in name.split('.')[1:]:\n        obj = getattr(obj, part, None)\n"
            "        if obj is None:\n            bad.append(name)\n            break\nprint(' '.join(bad))")
    # a fresh interpreter: nothing imported but what `import fastgan` imports
    out = subprocess.run([sys.executable, "-c", code, *names], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [], f"README names that `import fastgan` does not give: {out.stdout}"


def test_bench_options_the_readme_lists_exist():
    from fastgan.bench.suites import SUITES

    for suite in SUITES:
        assert f"`{suite}`" in README, f"the README does not list the bench suite {suite}"
