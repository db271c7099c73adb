"""Evaluation commands of reward models: `prmsearch eval processbench` (does a step scorer find the first wrong
step?) and `prmsearch eval canary` (accuracy, calibration and drift on a held-out set)."""
