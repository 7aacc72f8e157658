"""The error kind of this package: bad input from a user (a build, a profile, a site), said in
one sentence. Its ``user_facing`` mark is what the fi-campaign CLI turns into exit code 2;
nvbitfi_tools stays free of any import from the orchestrator."""


class NvbitfiError(Exception):
    user_facing = True
