"""Where the repository's own inputs live."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROVISION_DIR = REPO / "provision"
VAGRANT_DIR = REPO / "vagrant"
# Test-only image specs: a product image plus the fixtures its tests need.
# Built and validated by ./inv test, never published.
TEST_IMAGES_DIR = REPO / "tests" / "images"
