"""Renders provision/templates/ (a tree mirroring the guest's /) for a spec."""
from __future__ import annotations

from pathlib import Path

import jinja2

from golden.spec import ImageSpec

from golden.paths import PROVISION_DIR
TEMPLATES_DIR = PROVISION_DIR / "templates"


def _environment(directory: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(directory)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def render_tree(spec: ImageSpec, out_root: Path, templates_dir: Path = TEMPLATES_DIR) -> list[Path]:
    """Renders every *.j2 under templates_dir to out_root (suffix dropped)."""
    env = _environment(templates_dir)
    written = []
    for src in sorted(templates_dir.rglob("*.j2")):
        rel = src.relative_to(templates_dir).with_suffix("")
        dest = out_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(env.get_template(src.relative_to(templates_dir).as_posix()).render(spec=spec))
        dest.chmod(src.stat().st_mode & 0o777)
        written.append(dest)
    return written


def render_steps(spec: ImageSpec, steps: list[str], out_dir: Path, provision_dir: Path = PROVISION_DIR) -> Path:
    """Each provisioning step as it will run: <step> as is, or <step>.j2 rendered."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = _environment(provision_dir)
    for step in steps:
        if (provision_dir / f"{step}.j2").is_file():
            text = env.get_template(f"{step}.j2").render(spec=spec)
        else:
            text = (provision_dir / step).read_text()
        (out_dir / step).write_text(text)
        (out_dir / step).chmod(0o755)
    return out_dir
