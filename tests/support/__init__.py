"""Test infrastructure: real Label Studio, real PostgreSQL and the labelloop server as subprocesses.

Nothing in here imports ``backend`` or ``model``: the helpers talk to those only over HTTP and
through their command line, so they keep working while the application code changes.
"""
