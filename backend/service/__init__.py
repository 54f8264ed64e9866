"""Use cases: training rounds, scheduling, auto-labelling, access rules. No Flask, no argparse."""
