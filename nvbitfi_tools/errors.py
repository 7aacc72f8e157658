"""The error kind of this package: bad input from a user (a build, a profile, a site), said in
one sentence; a UserError, so the CLI turns it into exit code 2."""

from fi_campaign.errors import UserError


class NvbitfiError(UserError):
    pass
