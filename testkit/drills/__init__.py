"""The fault drills: plain functions `run(size, workdir) -> DrillResult` (see harness.py).

Short sizes run in the test suite (tests/drills/), long ones from `bench/drills.py`.
"""
