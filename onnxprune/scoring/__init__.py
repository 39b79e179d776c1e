"""Scoring: importance of every unit of every group, from weights or from calibration statistics."""

from onnxprune.scoring.importance import (
    CRITERIA,
    DATA_CRITERIA,
    ImportanceOptions,
    Scores,
    compute_importance,
    score_groups,
)

__all__ = ["CRITERIA", "DATA_CRITERIA", "ImportanceOptions", "Scores", "compute_importance", "score_groups"]
