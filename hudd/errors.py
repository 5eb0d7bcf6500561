"""The one user-error type.

Raised where bad input is found (missing folder, unreadable image, model that does not fit the
data, bad config value); caught only in :mod:`hudd.cli`, which prints ``hudd: error: <message>``
on one line and exits with status 2. The message names the file and says what to do.
"""

__all__ = ["HuddError"]


class HuddError(Exception):
    """A problem with the user's input that the user can fix; the message says how."""
