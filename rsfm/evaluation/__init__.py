"""Evaluation metrics shared by the model families (generation quality, zero-shot accuracy)."""

from rsfm.evaluation.generation import (
    ClipScorer,
    FeatureExtractor,
    clip_score,
    fid_kid,
    zero_shot_accuracy,
)

__all__ = ["ClipScorer", "FeatureExtractor", "clip_score", "fid_kid", "zero_shot_accuracy"]
