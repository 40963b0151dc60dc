"""The error type for mistakes a user of the ``nas`` tool can make (bad study file,
missing dataset, unknown run directory). The CLI prints it as one line and exits
non-zero; nothing else should be caught that broadly."""


class UserError(Exception):
    """A mistake in what the user asked for; ``str(err)`` is the one line shown."""
