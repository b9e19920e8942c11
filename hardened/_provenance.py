"""Where a result came from: the git commit of the running code and the command line.

Backend-free and import-light, so that recipes, the evaluation and the CLI
record provenance the same way without importing each other.
"""

import shlex
import subprocess
import sys
from pathlib import Path


def git_commit():
    """``(commit, dirty)`` of the source tree this package runs from (``(None, None)`` outside git).

    ``dirty`` looks at tracked files under ``hardened/`` only: the code that ran.
    """
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "hardened"],
                                cwd=root, capture_output=True, text=True, check=True, timeout=10).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


def command_line(argv=None):
    """A shell-quoted command line: ``hardened ARGS`` for ``argv`` (the arguments after the program),
    else the running process's ``sys.argv`` with the console script shown as ``hardened``."""
    if argv is not None:
        words = ["hardened", *argv]
    else:
        words = list(sys.argv)
        if words and words[0].endswith(("hardened", "cli.py", "__main__.py")):
            words[0] = "hardened"
    return " ".join(shlex.quote(str(a)) for a in words)
