"""Pure statistics: numpy in, frozen dataclasses out; no I/O, no clock, no logging.

- :mod:`~mlops.stats.sequential` - always-valid mSPRT tests, non-inferiority, the running monitor
- :mod:`~mlops.stats.srm` - sample ratio mismatch
- :mod:`~mlops.stats.paired` - McNemar and the paired bootstrap
- :mod:`~mlops.stats.multiple` - Benjamini-Hochberg, Bonferroni, Holm
- :mod:`~mlops.stats.twosample` - Welch, Mann-Whitney + Hodges-Lehmann, two proportions
- :mod:`~mlops.stats.power` - sample size and power
- :mod:`~mlops.stats.ab` - fixed-horizon A/B decision (``recommend``, ``ABTestAnalyzer``)

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
    "SRM_THRESHOLD",
    "ABTestAnalyzer",
    "BootstrapResult",
    "Comparison",
    "McNemarResult",
    "MeanComparison",
    "MetricVerdict",
    "MultipleTestResult",
    "ProportionComparison",
    "RankComparison",
    "Recommendation",
    "SRMResult",
    "SampleSize",
    "SequentialMonitor",
    "SequentialResult",
    "adjust_p_values",
    "always_valid_p_values",
    "benjamini_hochberg",
    "bonferroni",
    "choose_tau",
    "cohens_d",
    "default_higher_is_better",
    "hodges_lehmann",
    "holm",
    "mann_whitney_u",
    "mcnemar",
    "mcnemar_from_predictions",
    "minimum_detectable_effect",
    "mixture_log_lambda",
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
    "recommend",
    "relative_change_ci",
    "sample_ratio_mismatch",
    "sample_size_means",
    "sample_size_proportions",
    "two_proportion_z_test",
    "welch_t_test",
]
