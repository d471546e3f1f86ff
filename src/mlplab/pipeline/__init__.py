"""`mlplab reproduce` as a plan: its steps, their time estimates, running them with resume, and the report step.

The steps call the library directly (`mlplab.twolayer.section1`, `mlplab.stream`, `mlplab.mnist`) and the
LaTeX writer (`mlplab.report`); nothing here imports `mlplab.cli`.
"""
