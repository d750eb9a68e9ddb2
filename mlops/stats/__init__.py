"""Pure statistics: numpy in, frozen dataclasses out; no I/O, no clock, no logging.

- :mod:`~mlops.stats.sequential` - always-valid mSPRT tests, non-inferiority, the running monitor
- :mod:`~mlops.stats.srm` - sample ratio mismatch
- :mod:`~mlops.stats.paired` - McNemar and the paired bootstrap
- :mod:`~mlops.stats.multiple` - Benjamini-Hochberg, Bonferroni, Holm
- :mod:`~mlops.stats.twosample` - Welch, Mann-Whitney + Hodges-Lehmann, two proportions
- :mod:`~mlops.stats.power` - sample size and power
- :mod:`~mlops.stats.ab` - fixed-horizon A/B decision (``recommend``, ``ABTestAnalyzer``)
- :mod:`~mlops.stats.profile` - reference profiles (sorted samples, bins, category counts)
- :mod:`~mlops.stats.drift_univariate` - KS, PSI, Wasserstein, JS, energy, chi-square; column scores
- :mod:`~mlops.stats.drift` - ``detect_drift``: BH over the columns + effect floor, the report
- :mod:`~mlops.stats.drift_multivariate` - MMD permutation test, domain-classifier AUC
- :mod:`~mlops.stats.concept` - ADWIN, Page-Hinkley, DDM on error streams (river)
- :mod:`~mlops.stats.control` - CUSUM and EWMA control charts

Bad input raises :class:`mlops.errors.StatsError` with a ``fix``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Submodules load on first use (PEP 562): ``import mlops.stats`` stays cheap for the CLI,
# while ``from mlops.stats import detect_drift`` works as usual.
if TYPE_CHECKING:
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
        DriftReport,
        FeatureDrift,
        detect_drift,
        detect_drift_frames,
    )
    from mlops.stats.drift_multivariate import (
        ClassifierDriftResult,
        MMDResult,
        domain_classifier_auc,
        mmd_test,
    )
    from mlops.stats.drift_univariate import (
        ChiSquareResult,
        chi_square_categorical,
        energy_distance,
        jensen_shannon,
        ks_2samp_sorted,
        psi,
        wasserstein_normalized,
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

_LAZY: dict[str, str] = {
    "ABTestAnalyzer": "mlops.stats.ab",
    "ACTIONS": "mlops.stats.ab",
    "BootstrapResult": "mlops.stats.paired",
    "CONCEPT_METHODS": "mlops.stats.concept",
    "CategoricalProfile": "mlops.stats.profile",
    "ChiSquareResult": "mlops.stats.drift_univariate",
    "ClassifierDriftResult": "mlops.stats.drift_multivariate",
    "Comparison": "mlops.stats.ab",
    "ConceptDriftMonitor": "mlops.stats.concept",
    "ConceptDriftResult": "mlops.stats.concept",
    "ControlChartResult": "mlops.stats.control",
    "DEFAULT_CONCEPT_PARAMS": "mlops.stats.concept",
    "DEFAULT_MIN_EFFECT": "mlops.stats.drift",
    "DriftReport": "mlops.stats.drift",
    "FeatureDrift": "mlops.stats.drift",
    "MMDResult": "mlops.stats.drift_multivariate",
    "McNemarResult": "mlops.stats.paired",
    "MeanComparison": "mlops.stats.twosample",
    "MetricVerdict": "mlops.stats.ab",
    "MultipleTestResult": "mlops.stats.multiple",
    "NumericProfile": "mlops.stats.profile",
    "ProportionComparison": "mlops.stats.twosample",
    "RankComparison": "mlops.stats.twosample",
    "Recommendation": "mlops.stats.ab",
    "ReferenceProfile": "mlops.stats.profile",
    "SRMResult": "mlops.stats.srm",
    "SRM_THRESHOLD": "mlops.stats.srm",
    "SampleSize": "mlops.stats.power",
    "SequentialMonitor": "mlops.stats.sequential",
    "SequentialResult": "mlops.stats.sequential",
    "adjust_p_values": "mlops.stats.multiple",
    "always_valid_p_values": "mlops.stats.sequential",
    "benjamini_hochberg": "mlops.stats.multiple",
    "bonferroni": "mlops.stats.multiple",
    "build_profile": "mlops.stats.profile",
    "chi_square_categorical": "mlops.stats.drift_univariate",
    "choose_tau": "mlops.stats.sequential",
    "cohens_d": "mlops.stats.twosample",
    "cusum": "mlops.stats.control",
    "default_higher_is_better": "mlops.stats.ab",
    "detect_concept_drift": "mlops.stats.concept",
    "detect_drift": "mlops.stats.drift",
    "detect_drift_frames": "mlops.stats.drift",
    "domain_classifier_auc": "mlops.stats.drift_multivariate",
    "energy_distance": "mlops.stats.drift_univariate",
    "ewma": "mlops.stats.control",
    "hodges_lehmann": "mlops.stats.twosample",
    "holm": "mlops.stats.multiple",
    "jensen_shannon": "mlops.stats.drift_univariate",
    "ks_2samp_sorted": "mlops.stats.drift_univariate",
    "mann_whitney_u": "mlops.stats.twosample",
    "mcnemar": "mlops.stats.paired",
    "mcnemar_from_predictions": "mlops.stats.paired",
    "minimum_detectable_effect": "mlops.stats.power",
    "mixture_log_lambda": "mlops.stats.sequential",
    "mmd_test": "mlops.stats.drift_multivariate",
    "msprt_from_summary": "mlops.stats.sequential",
    "msprt_non_inferiority_means": "mlops.stats.sequential",
    "msprt_non_inferiority_paired": "mlops.stats.sequential",
    "msprt_non_inferiority_proportions": "mlops.stats.sequential",
    "msprt_paired": "mlops.stats.sequential",
    "msprt_two_proportions": "mlops.stats.sequential",
    "msprt_two_sample_means": "mlops.stats.sequential",
    "non_inferiority_from_summary": "mlops.stats.sequential",
    "paired_bootstrap_ci": "mlops.stats.paired",
    "power_means": "mlops.stats.power",
    "power_proportions": "mlops.stats.power",
    "psi": "mlops.stats.drift_univariate",
    "recommend": "mlops.stats.ab",
    "relative_change_ci": "mlops.stats.twosample",
    "sample_ratio_mismatch": "mlops.stats.srm",
    "sample_size_means": "mlops.stats.power",
    "sample_size_proportions": "mlops.stats.power",
    "two_proportion_z_test": "mlops.stats.twosample",
    "wasserstein_normalized": "mlops.stats.drift_univariate",
    "welch_t_test": "mlops.stats.twosample",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mlops.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
