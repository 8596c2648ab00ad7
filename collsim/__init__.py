"""collsim: simulator of collective communication on large accelerator clusters."""

__version__ = "0.1.0"
