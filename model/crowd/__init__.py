"""Crowd labelling: several annotations per task, their consensus, suspected label errors, annotator quality.

Pure numpy / scikit-learn, arrays in and arrays out, like the rest of :mod:`model` (no pandas: this
may run in a serving worker). The pieces, in the order a training round uses them::

    from model.crowd import Annotations, crowd_round

    ann = Annotations.from_records(items, annotators, labels, classes, ground_truth=gt)  # one row per annotation
    step = crowd_round(ann, X, make_estimator)      # X: one input per item, make_estimator: the round's estimator
    rows, targets = step.training_targets()         # what the final fit trains on (one target per item)
    history = step.summary()                        # tasks, annotations, agreement, alpha, issues, annotators

which runs, in this order (each step usable alone)::

    first = dawid_skene(ann)                          # consensus from the annotations alone
    proba, fold = cross_fitted_proba(make_estimator, X, first.label_names(), classes)  # honest probabilities
    final = dawid_skene(ann, proba=proba)             # the model as each item's prior
    issues = crowd_label_issues(ann, final)           # suspected mislabels, most suspect first
    people = annotator_report(ann, final, proba)      # per annotator: accuracy with an interval, weight

* :mod:`model.crowd.annotations` -- the long-format container (item, annotator, label, ground truth);
* :mod:`model.crowd.consensus` -- majority vote, Dawid-Skene (EM), CROWDLAB, Krippendorff's alpha;
* :mod:`model.crowd.issues` -- cross-fitted probabilities, confident learning, ActiveLab scores;
* :mod:`model.crowd.annotators` -- per-annotator agreement, accuracy and reliability weight;
* :mod:`model.crowd.rounds` -- :func:`crowd_round`, the above in a training round's order;
* :mod:`model.crowd.profiles` -- simulated annotators for replays (``labelloop simulate --noise``).
"""

from model.crowd.annotations import Annotations
from model.crowd.annotators import AnnotatorStats, annotator_report
from model.crowd.consensus import Consensus, crowdlab, dawid_skene, krippendorff_alpha, majority_vote
from model.crowd.issues import LabelIssues, activelab_scores, confident_learning, cross_fitted_proba, label_issues
from model.crowd.rounds import CrowdRound, crowd_round

__all__ = [
    "Annotations",
    "AnnotatorStats",
    "Consensus",
    "CrowdRound",
    "LabelIssues",
    "activelab_scores",
    "annotator_report",
    "confident_learning",
    "cross_fitted_proba",
    "crowd_round",
    "crowdlab",
    "dawid_skene",
    "krippendorff_alpha",
    "label_issues",
    "majority_vote",
]
