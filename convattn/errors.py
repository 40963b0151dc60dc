"""Errors a user can cause by configuring a block or kernel badly.

Every error names the offending config key in ``field`` so that callers that
know where the block sits (the spec validator) can prefix the path, e.g.
``stages[2].blocks[0].heads``.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A block or kernel config value that is not allowed.

    ``field`` is the config key at fault ("" when the error is about the block as a
    whole, e.g. an unknown block name); ``message`` says what is allowed.
    """

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class MapSizeError(ConfigError):
    """A feature-map size that a block or kernel cannot run on (e.g. Linformer at a
    size other than the one it was built for, ACmix's reflection pad on a 1x1 map)."""

    def __init__(self, message: str, field: str = "input_size"):
        super().__init__(field, message)
