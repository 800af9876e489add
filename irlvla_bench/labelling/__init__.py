"""IRL labels for the reward world model: candidate trajectories per scene, labelled by the exact EPDMS.

``candidates`` (vocabulary by k-means, expert perturbations, IL samples), ``label`` (Parquet shards, Ray,
resume), ``epdms`` (the per-candidate EPDMS with EC), ``scene_kind`` (report breakdown).
"""

from irlvla_bench.labelling.candidates import (
    CandidateConfig,
    Candidates,
    PerturbationConfig,
    build_candidates,
    fit_vocabulary,
    kmeans,
    perturb,
)
from irlvla_bench.labelling.epdms import epdms, extended_comfort_labels
from irlvla_bench.labelling.label import (
    LabelConfig,
    LabelSummary,
    label_case,
    label_split,
    load_label_config,
    load_labels,
    load_vocabulary,
    poses_of,
)
from irlvla_bench.labelling.vocabulary import training_trajectories, vocabulary_from_cache

__all__ = [
    "CandidateConfig", "Candidates", "LabelConfig", "LabelSummary", "PerturbationConfig", "build_candidates",
    "epdms", "extended_comfort_labels", "fit_vocabulary", "kmeans", "label_case", "label_split",
    "load_label_config", "load_labels", "load_vocabulary", "perturb", "poses_of", "training_trajectories",
    "vocabulary_from_cache",
]
