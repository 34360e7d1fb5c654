"""Evaluation: metrics, the champion/challenger gate and drift tests."""
