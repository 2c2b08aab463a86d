"""Reading definitions from a user's files: Azure ML YAML, curated asset folders, build-context folders."""
