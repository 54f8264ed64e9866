"""labelloop backend: HTTP app, Label Studio adapters, SQL store, training jobs, CLI."""
