"""The one exception type that the command-line entry points turn into a one-line message."""


class UserError(Exception):
    """Bad input from the user: the message names what is wrong and how to fix it."""
