"""The one error hierarchy of nmtc.

Every failure a user can cause (a bad file, an operator we cannot translate, a
layer that does not fit a core) raises a subclass of :class:`NmtcError` whose
message is one line naming the thing at fault. The CLI prints that line and
exits with code 2; library users catch ``NmtcError``. Nothing here may import
torch or a vendor library.
"""
from __future__ import annotations


class NmtcError(Exception):
    """Base class: a problem the user can act on, described in one line."""

    exit_code: int = 2


class BadInputError(NmtcError):
    """A file or argument is missing, empty, truncated or of the wrong format."""


class PickleRefusedError(BadInputError):
    """A file holds a pickled Python object and the user did not allow unpickling."""


class UnsupportedOpError(NmtcError):
    """A model contains an operator or module type nmtc cannot translate."""


class IRValidationError(NmtcError):
    """An IR node or graph is inconsistent (shapes, parameters, edges)."""


class NotExpressibleError(NmtcError):
    """A graph holds nodes a target format (NIR, netx, ...) cannot represent."""


class DoesNotFitError(NmtcError):
    """A layer exceeds a hardware resource limit."""


class MissingVendorError(NmtcError):
    """An optional vendor library (Lava, lava-dl, sinabs) that a command needs is not
    importable; the message names the package and how to install it."""
