"""Stage 3 of the pipeline: workers claim sites from the store, run them with an executor and record
the results with their sites' status."""
