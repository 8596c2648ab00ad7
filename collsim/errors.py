"""The one error type users see for bad input.

Every validation failure names the offending config field and what is allowed.
The command turns it into a single line on stderr and exit code 2 (usage error),
never a traceback.
"""


class ConfigError(ValueError):
    """Invalid user input; ``field`` is the dotted config key at fault."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
