"""Crowd labelling: several annotations per task, their consensus, suspected label errors, annotator quality.

Pure numpy / scikit-learn, arrays in and arrays out, like the rest of :mod:`model` (no pandas: this
may run in a serving worker). The pieces, in the order a training round uses them::

    from model.crowd import Annotations, dawid_skene, cross_fitted_proba, label_issues, annotator_report

    ann = Annotations.from_records(items, annotators, labels, classes, ground_truth=gt)   # one row per annotation
    first = dawid_skene(ann)                                       # consensus from the annotations alone
    proba, fold = cross_fitted_proba(make, X, first.label_names(), classes)  # no item scored by a model that saw it
    final = dawid_skene(ann, proba=proba)                          # the model as each item's prior
    issues = label_issues(ann, final, proba)                       # ranked suspected mislabels
    people = annotator_report(ann, final, proba)                   # per annotator: accuracy with an interval, weight

* :mod:`model.crowd.annotations` -- the long-format container (item, annotator, label, ground truth);
* :mod:`model.crowd.consensus` -- majority vote, Dawid-Skene (EM), CROWDLAB, Krippendorff's alpha;
* :mod:`model.crowd.issues` -- cross-fitted probabilities, confident learning, ActiveLab scores;
* :mod:`model.crowd.annotators` -- per-annotator agreement, accuracy and reliability weight;
* :mod:`model.crowd.profiles` -- simulated annotators for replays (``labelloop simulate --noise``).
"""

from model.crowd.annotations import Annotations
from model.crowd.annotators import AnnotatorStats, annotator_report
from model.crowd.consensus import Consensus, crowdlab, dawid_skene, krippendorff_alpha, majority_vote
from model.crowd.issues import LabelIssues, activelab_scores, confident_learning, cross_fitted_proba, label_issues

__all__ = [
    "Annotations",
    "AnnotatorStats",
    "Consensus",
    "LabelIssues",
    "activelab_scores",
    "annotator_report",
    "confident_learning",
    "cross_fitted_proba",
    "crowdlab",
    "dawid_skene",
    "krippendorff_alpha",
    "label_issues",
    "majority_vote",
]
