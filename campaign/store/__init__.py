"""Stage 2 of the pipeline: the store every planned site and every result lives in."""
from fi_campaign.store.backends import Target, parse_target
from fi_campaign.store.beside import log_path, runs_dir
from fi_campaign.store.database import Store, StoreError
from fi_campaign.store.records import (BitGroup, CampaignRecord, CountCheck, FaultModelRecord, InjectionRecord,
                                       LaunchCount, LeftOut, ModelRecord, ProfileRecord, Redraw, RegretRecord,
                                       Relocation, Result, ResultGroup, ResumePlan, Site, StratumStatus, Versions,
                                       Worker, WorkerStatus, WorkloadRecord)

__all__ = ["BitGroup", "CampaignRecord", "CountCheck", "FaultModelRecord", "InjectionRecord", "LaunchCount", "LeftOut",
           "ModelRecord", "ProfileRecord", "Redraw", "RegretRecord", "Relocation", "Result", "ResultGroup", "ResumePlan",
           "Site", "Store", "StoreError", "StratumStatus", "Target", "Versions", "Worker", "WorkerStatus",
           "WorkloadRecord", "log_path", "parse_target", "runs_dir"]
