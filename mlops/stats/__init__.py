"""Pure statistics: numpy in, frozen dataclasses out; no I/O, no clock, no logging.

- :mod:`~mlops.stats.sequential` - always-valid mSPRT tests, non-inferiority, the running monitor
- :mod:`~mlops.stats.srm` - sample ratio mismatch
- :mod:`~mlops.stats.paired` - McNemar and the paired bootstrap
- :mod:`~mlops.stats.multiple` - Benjamini-Hochberg, Bonferroni, Holm
- :mod:`~mlops.stats.twosample` - Welch, Mann-Whitney + Hodges-Lehmann, two proportions
- :mod:`~mlops.stats.power` - sample size and power
- :mod:`~mlops.stats.ab` - fixed-horizon A/B decision (``recommend``, ``ABTestAnalyzer``)
- :mod:`~mlops.stats.profile` - reference profiles (sorted samples, bins, category counts)
- :mod:`~mlops.stats.drift` - KS, PSI, Wasserstein, JS, energy, chi-square; BH + effect floor
- :mod:`~mlops.stats.drift_multivariate` - MMD permutation test, domain-classifier AUC
- :mod:`~mlops.stats.concept` - ADWIN, Page-Hinkley, DDM on error streams (river)
- :mod:`~mlops.stats.control` - CUSUM and EWMA control charts

Bad input raises :class:`mlops.errors.StatsError` with a ``fix``.
"""

from __future__ import annotations

from mlops.stats.ab import (
    ACTIONS,
    ABTestAnalyzer,
    Comparison,
    MetricVerdict,
    Recommendation,
    default_higher_is_better,
    recommend,
)
from mlops.stats.concept import (
    CONCEPT_METHODS,
    DEFAULT_CONCEPT_PARAMS,
    ConceptDriftMonitor,
    ConceptDriftResult,
    detect_concept_drift,
)
from mlops.stats.control import ControlChartResult, cusum, ewma
from mlops.stats.drift import (
    DEFAULT_MIN_EFFECT,
    ChiSquareResult,
    DriftReport,
    FeatureDrift,
    chi_square_categorical,
    detect_drift,
    detect_drift_frames,
    energy_distance,
    jensen_shannon,
    ks_2samp_sorted,
    psi,
    wasserstein_normalized,
)
from mlops.stats.drift_multivariate import (
    ClassifierDriftResult,
    MMDResult,
    domain_classifier_auc,
    mmd_test,
)
from mlops.stats.multiple import (
    MultipleTestResult,
    adjust_p_values,
    benjamini_hochberg,
    bonferroni,
    holm,
)
from mlops.stats.paired import (
    BootstrapResult,
    McNemarResult,
    mcnemar,
    mcnemar_from_predictions,
    paired_bootstrap_ci,
)
from mlops.stats.power import (
    SampleSize,
    minimum_detectable_effect,
    power_means,
    power_proportions,
    sample_size_means,
    sample_size_proportions,
)
from mlops.stats.profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    build_profile,
)
from mlops.stats.sequential import (
    SequentialMonitor,
    SequentialResult,
    always_valid_p_values,
    choose_tau,
    mixture_log_lambda,
    msprt_from_summary,
    msprt_non_inferiority_means,
    msprt_non_inferiority_paired,
    msprt_non_inferiority_proportions,
    msprt_paired,
    msprt_two_proportions,
    msprt_two_sample_means,
    non_inferiority_from_summary,
)
from mlops.stats.srm import SRM_THRESHOLD, SRMResult, sample_ratio_mismatch
from mlops.stats.twosample import (
    MeanComparison,
    ProportionComparison,
    RankComparison,
    cohens_d,
    hodges_lehmann,
    mann_whitney_u,
    relative_change_ci,
    two_proportion_z_test,
    welch_t_test,
)

__all__ = [
    "ACTIONS",
    "CONCEPT_METHODS",
    "DEFAULT_CONCEPT_PARAMS",
    "DEFAULT_MIN_EFFECT",
    "SRM_THRESHOLD",
    "ABTestAnalyzer",
    "BootstrapResult",
    "CategoricalProfile",
    "ChiSquareResult",
    "ClassifierDriftResult",
    "Comparison",
    "ConceptDriftMonitor",
    "ConceptDriftResult",
    "ControlChartResult",
    "DriftReport",
    "FeatureDrift",
    "MMDResult",
    "McNemarResult",
    "MeanComparison",
    "MetricVerdict",
    "MultipleTestResult",
    "NumericProfile",
    "ProportionComparison",
    "RankComparison",
    "Recommendation",
    "ReferenceProfile",
    "SRMResult",
    "SampleSize",
    "SequentialMonitor",
    "SequentialResult",
    "adjust_p_values",
    "always_valid_p_values",
    "benjamini_hochberg",
    "bonferroni",
    "build_profile",
    "chi_square_categorical",
    "choose_tau",
    "cohens_d",
    "cusum",
    "default_higher_is_better",
    "detect_concept_drift",
    "detect_drift",
    "detect_drift_frames",
    "domain_classifier_auc",
    "energy_distance",
    "ewma",
    "hodges_lehmann",
    "holm",
    "jensen_shannon",
    "ks_2samp_sorted",
    "mann_whitney_u",
    "mcnemar",
    "mcnemar_from_predictions",
    "minimum_detectable_effect",
    "mixture_log_lambda",
    "mmd_test",
    "msprt_from_summary",
    "msprt_non_inferiority_means",
    "msprt_non_inferiority_paired",
    "msprt_non_inferiority_proportions",
    "msprt_paired",
    "msprt_two_proportions",
    "msprt_two_sample_means",
    "non_inferiority_from_summary",
    "paired_bootstrap_ci",
    "power_means",
    "power_proportions",
    "psi",
    "recommend",
    "relative_change_ci",
    "sample_ratio_mismatch",
    "sample_size_means",
    "sample_size_proportions",
    "two_proportion_z_test",
    "wasserstein_normalized",
    "welch_t_test",
]
