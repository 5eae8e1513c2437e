class GoldenError(Exception):
    """An error the user can act on; tasks print it as one line and exit 1."""
