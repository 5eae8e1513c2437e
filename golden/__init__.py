"""golden: builds, validates and publishes golden Debian VM images."""
