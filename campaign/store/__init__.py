"""Stage 2 of the pipeline: the store every planned site and every result lives in."""
from fi_campaign.store.backends import Target, parse_target
from fi_campaign.store.beside import log_path, runs_dir
from fi_campaign.store.database import Store, StoreError
from fi_campaign.store.records import (BitGroup, CampaignRecord, CountCheck, InjectionRecord, LaunchCount, Redraw,
                                    RegretRecord, Relocation, Result, ResultGroup, Site, StratumStatus, Worker,
                                    WorkerStatus)

__all__ = ["BitGroup", "CampaignRecord", "CountCheck", "InjectionRecord", "LaunchCount", "Redraw", "RegretRecord",
           "Relocation", "Result", "ResultGroup", "Site", "Store", "StoreError", "StratumStatus", "Target", "Worker",
           "WorkerStatus", "log_path", "parse_target", "runs_dir"]
