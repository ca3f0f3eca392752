"""How to run this ``safewatch`` again, for the commands that messages advise.

The one place that formats that advice: the command line's messages use it, and so do those of
storage (``db upgrade`` advised when the schema is behind), which cannot import the command line
(:mod:`safewatch.cli` registers every command as it is imported). A bare ``safewatch`` failed when
pasted after ``make run`` (``.venv/bin/safewatch``, not on ``PATH``), and ``-c SITE`` is no file.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

__all__ = ["command", "command_for_site"]


def command() -> str:
    """How to run this same ``safewatch`` again, for commands printed as advice.

    ``safewatch`` when the one on ``PATH`` is this one; otherwise its path (``make run`` starts
    ``.venv/bin/safewatch``, which is not on ``PATH``: a bare ``safewatch`` there is "command not
    found", or another installation); ``python -m safewatch`` with this interpreter when run so.
    The bare name too when another program runs this code (a test runner, a process manager):
    its path is no way to run safewatch.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if not argv0 or Path(argv0).name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m safewatch"
    if Path(argv0).stem != "safewatch":
        return "safewatch"
    running = os.path.abspath(argv0) if os.sep in argv0 else shutil.which(argv0)
    on_path = shutil.which("safewatch")
    if running is None or not os.path.exists(running):
        return "safewatch"
    if on_path is not None and os.path.samefile(on_path, running):
        return "safewatch"
    return shlex.quote(running)


def command_for_site(words: str, site_file: str | Path | None) -> str:
    """``words`` (``db upgrade``) as a command to paste: :func:`command`, then ``-c`` and the
    site file, shell-quoted (``SITE`` where the caller does not know it). Options may follow."""
    site = "SITE" if site_file is None else shlex.quote(str(site_file))
    return f"{command()} {words} -c {site}"
