"""Writing the project's JSON files."""
from __future__ import annotations

import json
import os
from pathlib import Path


def write_json(path: Path, data, sort_keys: bool = True) -> None:
    """Atomic: a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n")
    os.replace(tmp, path)
