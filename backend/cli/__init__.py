"""The `labelloop` command: serve, train, history, autolabel, report, simulate, db."""
