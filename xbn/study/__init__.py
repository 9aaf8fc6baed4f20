"""The study: do the papers' claims about BatchNorm hold in xbn?

- :mod:`xbn.study.plan`: what is trained (forms, batch sizes, seeds, schedule);
- :mod:`xbn.study.runner`: trains and measures the runs, in parallel and resumably;
- :mod:`xbn.study.analysis`: the hypotheses H1-H4 with confidence intervals;
- :mod:`xbn.study.report`: tables and figures from ``results.json``.
"""

from xbn.study.plan import Cell, Form, Plan, forms_of, study_plan
from xbn.study.runner import measure_cell, run_study, write_results

__all__ = ["Cell", "Form", "Plan", "forms_of", "measure_cell", "run_study", "study_plan", "write_results"]
