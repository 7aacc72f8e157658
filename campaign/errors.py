"""The one exception type for bad input, at the bottom of the layers so that every package
(models, nvbitfi_tools, the pipeline stages) raises it without importing anything above.

The CLI turns it into one sentence and exit code 2 in one place (``fi_campaign.cli.Cli``); a
worker process sends it to its runner, which does the same. Anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a config, a path, a name, a file. The message is one plain sentence."""
