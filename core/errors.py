"""Exceptions a user can act on.

`LayerscopeError` subclasses `ValueError` so callers that follow the
scikit-learn habit of catching `ValueError` for bad input keep working; the
CLI turns it into a one-line message and exit code 2, the dashboard into an
`st.error`.
"""


class LayerscopeError(ValueError):
    """A mistake in what the user asked for: bad name, path, column or option."""


class DamagedEntryError(LayerscopeError):
    """A store entry whose files no longer match the checksums written with it."""
