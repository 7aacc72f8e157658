"""Stage 5 of the pipeline: AVF tables, comparisons, FIT, HTML pages and exports from a store."""
