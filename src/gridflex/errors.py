"""The project's exceptions: each says what was wrong and what is allowed."""


class GridflexError(Exception):
    """Base of every error gridflex raises on purpose."""


class InputError(GridflexError, ValueError):
    """Bad input: a scenario, config, event or request that cannot be used as given."""


class DriverError(GridflexError):
    """A driver could not read or act; nothing was half-applied."""
