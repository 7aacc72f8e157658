"""The campaign's judge as ``fi_campaign.classify`` applies it, a judge function imported from
the file the config names (that runs the user's code, which the user asked for by naming it)."""

from __future__ import annotations

from fi_campaign.classify import Judge
from fi_campaign.config import Config


def judge_of(config: Config) -> Judge:
    j = config.judge
    if j.kind != "function":
        return Judge(kind=j.kind, k=j.k or 1)
    from fi_campaign.models.sources import import_function

    assert j.function is not None, "a function judge names its function"
    return Judge(kind="function", function=import_function(j.function, "judge"), name=j.function)
