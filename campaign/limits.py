"""The ceilings every config key and CLI option is checked against, in one import-free module
so the config reader and the CLI's option types cannot disagree. docs/DESIGN.md gives the
measurements behind them."""

from __future__ import annotations

# numpy's seed sequences take any non-negative int, but SQLite's INTEGER column is signed 64-bit
MAX_SEED = 2**63 - 1
# planning holds ~540 B per site in memory and the store ~180 B per site (bench/plan_size.py):
# 10^7 sites is ~5.4 GB while planning and ~1.8 GB on disk, what a workstation can hold
MAX_INJECTIONS = 10**7
MAX_SITES = 10**7  # models x modes x injections, for the same reason
# one forward pass of this many CIFAR images already needs GBs of activations (ResNet-20's first
# layer alone: 64 KiB per image); whether a given machine holds a smaller one is a run-time question
MAX_BATCH = 65_536
MAX_IMAGES = 10**6  # workload images, held normalised in memory by every worker
MAX_IMAGE_SIDE = 8192  # inputs.size: an image folder's images are resized to size x size
MAX_TOPK = 100_000  # judge topk: K classes (no classifier is wider than this)
MAX_INPUT_BYTES = 16 << 30  # an inputs tensor file: every worker holds the drawn inputs in memory
MAX_GOLDEN_RUNS = 20
MAX_TIMEOUT_FACTOR = 1000.0
MAX_CONFIG_BYTES = 1_000_000  # a YAML file beyond this is no hand-written config (alias bombs)
MAX_TEXT = 4096  # PATH_MAX: every string of a config names a path, a model or a table
MAX_REPEATS = 10_000  # evaluate --repeats: injections per image
MAX_EPOCHS = 100_000
MAX_WORKERS = 4096
MAX_RESUME_CACHE_MB = 1_048_576  # resume_cache_mb: 1 TiB, far above any machine; memory is checked at run time
MAX_SLURM_MINUTES = 366 * 24 * 60  # slurm.time: a year; Slurm's own limits are the partition's
