"""The one exception family users see.

Every error a user can cause (a bad file, a bad option, an image too small, a loss that
blew up) is an :class:`NstError` with a one-line message; the CLI prints that line and
exits non-zero instead of showing a traceback. Anything else is a bug.
"""


class NstError(Exception):
    """A user-facing error: the message says what is wrong and what to do."""


class WeightsError(NstError):
    """A weights file that cannot be read, converted or matched to the model."""


class ImageError(NstError):
    """An image that cannot be read, written, or is unusable for the network."""


class ConfigError(NstError):
    """An option value the run cannot use; ``field`` names the config field, so a front
    end can say which of its own options that is."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


class VideoError(NstError):
    """A video or frame folder that cannot be read or written (clip.py)."""
