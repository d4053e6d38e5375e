"""Writing a benchmark's results: what every script in this folder shares."""

import json
import os
import platform
import tempfile
from pathlib import Path


def write_json(path, payload):
    """Write ``payload`` as JSON to ``path`` through a temporary file beside it,
    so that a run that fails midway leaves the previous results whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp",
                                     encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(f.name, path)
    print(f"wrote {path}")


def cpu_model():
    """The CPU's model name, or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None
