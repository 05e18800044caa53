"""The course around the package: graded exercises (classroom), the setup report, the reference
checkpoint and its card, and the notebooks' plots."""
