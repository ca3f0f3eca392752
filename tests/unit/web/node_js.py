"""Running the dashboard's ``static/js/api.js`` under Node.js, as the browser imports it.

One runner for every JS unit test: a prelude (stubs the module expects, or a scripted clock and
server), the module imported as ``site``, then an async function body whose result comes back
through JSON. Tests skip where Node.js is missing (``.ci/run`` installs it with npm).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

API_JS = (
    Path(__file__).resolve().parents[3] / "src" / "safewatch" / "web" / "static" / "js" / "api.js"
)
NODE = shutil.which("node")

needs_node = pytest.mark.skipif(NODE is None, reason="needs Node.js (.ci/run installs it with npm)")


def run_api_js(prelude: str, body: str, *, env: Mapping[str, str] | None = None) -> Any:
    """Run ``body`` (an async function body with ``site``, the imported ``api.js``, and what
    ``prelude`` defines in scope); what it returns, through JSON."""
    assert NODE is not None
    script = (
        f"{prelude}\nconst site = await import({json.dumps(API_JS.as_uri())});\n"
        f"const result = await (async () => {{ {body} }})();\n"
        "console.log(JSON.stringify(result));\n"
    )
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
