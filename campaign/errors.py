"""The one exception kind the CLI turns into a sentence and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a config, a path, a name. The message is one plain sentence."""

    user_facing = True
