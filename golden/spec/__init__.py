"""The image spec: its model (each field with its rule) and its loading."""
from golden.spec.load import DEFAULT_IMAGE, is_test_spec, load_spec, select_specs, spec_names, spec_warnings
from golden.spec.model import (APP_RUN_DIR, NAME_RE, RESERVED_USERS, App, Auth, Base, Caddy, Container,
                               ContainerImage, Disk, Firewall, ImageSpec, Site, Sockets, SpecError, Time, Vm)

__all__ = ["DEFAULT_IMAGE", "is_test_spec", "load_spec", "spec_warnings", "select_specs", "spec_names",
           "APP_RUN_DIR", "NAME_RE", "RESERVED_USERS", "App", "Auth", "Base", "Caddy", "Container", "ContainerImage",
           "Disk", "Firewall", "ImageSpec", "Site", "Sockets", "SpecError", "Time", "Vm"]
