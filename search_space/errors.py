"""The error a user causes with a bad model spec or search space.

``path`` names the offending field the way a user reads the YAML
(``stages[2].blocks[0].heads``, ``space.knobs.aa.heads``); ``message`` says what
is wrong and what is allowed. ``nas.cli`` prints ``str(err)`` as one line.
"""

from __future__ import annotations


class SpecError(ValueError):
    """A model spec or search space value that is not allowed.

    ``source`` (optional) is the file the document came from; it is shown first so
    that a user with several spec files knows which one is wrong.
    """

    def __init__(self, path: str, message: str, source: str | None = None):
        self.path = path
        self.message = message
        self.source = source
        super().__init__(self._text())

    def _text(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        return f"{self.source}: {text}" if self.source else text

    def with_source(self, source: str) -> SpecError:
        """The same error, naming the file it came from."""
        return SpecError(self.path, self.message, source)

    def __reduce__(self):  # picklable (Ray ships errors between processes)
        return (SpecError, (self.path, self.message, self.source))
