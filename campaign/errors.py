"""The one exception kind the CLI turns into a sentence and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a config, a path, a name. The message is one plain sentence."""

    user_facing = True


def mark_model_errors() -> None:
    """Let the CLI treat the models package's input errors as user-facing, without importing
    torch at start-up (models.zoo imports it)."""
    from fi_campaign.models.data import DataError
    from fi_campaign.models.zoo import CheckpointError

    for cls in (DataError, CheckpointError):
        cls.user_facing = True
