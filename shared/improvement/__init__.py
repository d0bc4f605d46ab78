"""Improving a model over time: the review queue, reviewers' corrections, comparing versions, drift."""
