"""Studies: a grid of configurations × seeds run through ``run_experiment``, aggregated
honestly (mean ± std, Student-t intervals, Welch tests, effect sizes) and reported as Markdown,
self-contained HTML, CSV and JSON.

    study = load_study("studies/activations.yaml")
    outcome = run_study(study, study_file="studies/activations.yaml", quick=True)
    write_report(aggregate_study(outcome.study_dir))
"""

from archlab.studies import (cost_sections, degradation_section, diagnostic_sections,  # noqa: F401
                             generalization_sections, recommendations,
                             sample_sections)  # (register their report sections)
from archlab.studies.aggregate import StudyResults, aggregate_study
from archlab.studies.report import write_report
from archlab.studies.runner import StudyOutcome, run_study, study_dir_for
from archlab.studies.sections import REPORT_SECTIONS
from archlab.studies.spec import StudyConfig, build_study, load_study
from archlab.studies.trials import Trial, expand_trials

__all__ = ["REPORT_SECTIONS", "StudyConfig", "StudyOutcome", "StudyResults", "Trial",
           "aggregate_study", "build_study", "expand_trials", "load_study", "run_study",
           "study_dir_for", "write_report"]
