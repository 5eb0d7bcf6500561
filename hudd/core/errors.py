"""The one user-error type, and the one line an OSError (full disk, permissions) becomes.

Raised where bad input is found (missing folder, unreadable image, model that does not fit the
data, bad config value); caught only in :mod:`hudd.cli`, which prints ``hudd: error: <message>``
on one line and exits with status 2. The message names the file and says what to do.
"""

import errno

__all__ = ["HuddError", "SettingError", "os_error_message"]


class HuddError(Exception):
    """A problem with the user's input that the user can fix; the message says how."""


class SettingError(HuddError):
    """A bad value of the setting ``key``, found below the code that knows where the user wrote it.

    The message is ``<key> <detail>``; the step that read the setting re-raises it as
    ``<where> <detail>`` with :meth:`hudd.config.Config.where` (the flag, or the hudd.toml key)."""

    def __init__(self, key: str, detail: str):
        super().__init__(f"{key} {detail}")
        self.key, self.detail = key, detail


_WHAT_TO_DO = {
    errno.ENOSPC: "free space", errno.EDQUOT: "free space", errno.EROFS: "make it writable (the file system is read-only)",
    errno.EACCES: "fix its permissions", errno.EPERM: "fix its permissions",
    errno.ENOENT: "check that it exists",
    errno.EISDIR: "move the folder in the way", errno.ENOTDIR: "move the file in the way",
    errno.EEXIST: "move what is in the way",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: the file, what happened, what to do."""
    where = f"{exc.filename}: " if exc.filename else "writing the workspace: "
    what = (exc.strerror or str(exc)).strip().rstrip(".")
    return f"{where}{what}; {_WHAT_TO_DO.get(exc.errno, 'check the file')}, then run the command again (finished steps are kept)"
