class GoldenError(Exception):
    """An error the user can act on; tasks print it as one line and exit 1."""


def printable(text: str) -> str:
    """Text from outside (a server, a catalog) made safe to print: anything
    that is not printable (control characters, escape sequences, bidi
    overrides) is shown escaped, as Python would write it."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
