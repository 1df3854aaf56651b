"""The exceptions xpnet raises on purpose, so callers (and the CLI) can tell them apart."""


class XpnetError(Exception):
    """Base class of every error xpnet raises on purpose; its message is one line for a user."""


class BackendUnavailableError(XpnetError, RuntimeError):
    """A backend or device was asked for but cannot be used here (package missing, no GPU)."""


class BackendMismatchError(XpnetError, TypeError):
    """Arrays that must live together come from different namespaces or devices."""


class NetworkError(XpnetError, ValueError):
    """A network's parameters are malformed or do not fit the input."""


class DataError(XpnetError, ValueError):
    """A data file is missing, truncated, corrupt or not what its name says."""


class WeightsError(XpnetError, ValueError):
    """A weight file is unreadable, unsafe (a pickle that would run code) or malformed."""
