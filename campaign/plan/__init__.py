"""Stage 1 of the pipeline: from a config to a campaign record and every site, drawn before anything runs."""
