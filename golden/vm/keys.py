"""Vagrant's well-known insecure key pair: the first login of Packer and of
`vagrant up`, which replaces it with a key of its own on each VM."""
from __future__ import annotations

import glob
from pathlib import Path

from golden.errors import GoldenError

SEARCH = ["/usr/share/rubygems-integration/all/gems/vagrant-*/keys",
          "/opt/vagrant/embedded/gems/gems/vagrant-*/keys",
          "/opt/vagrant/embedded/gems/*/gems/vagrant-*/keys"]


def insecure_key_pair() -> tuple[Path, Path]:
    """(private key, public key) shipped with the installed Vagrant."""
    for pattern in SEARCH:
        for keys in sorted(glob.glob(pattern), reverse=True):
            private, public = Path(keys) / "vagrant", Path(keys) / "vagrant.pub"
            if private.is_file() and public.is_file():
                return private, public
    raise GoldenError("Vagrant's insecure key pair not found: is vagrant installed? (./inv installs it)")
