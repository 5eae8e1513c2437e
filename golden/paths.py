"""Where the repository's own inputs live."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROVISION_DIR = REPO / "provision"
VAGRANT_DIR = REPO / "vagrant"
