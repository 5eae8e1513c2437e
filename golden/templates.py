"""Renders provision/templates/ (a tree mirroring the guest's /) for a spec."""
from __future__ import annotations

from pathlib import Path

import jinja2

from golden.spec import ImageSpec

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "provision" / "templates"


def render_tree(spec: ImageSpec, out_root: Path, templates_dir: Path = TEMPLATES_DIR) -> list[Path]:
    """Renders every *.j2 under templates_dir to out_root (suffix dropped)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    written = []
    for src in sorted(templates_dir.rglob("*.j2")):
        rel = src.relative_to(templates_dir).with_suffix("")
        dest = out_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(env.get_template(src.relative_to(templates_dir).as_posix()).render(spec=spec))
        written.append(dest)
    return written
