"""The course around the package: graded exercises (classroom) and the handouts made from the solved
notebooks (handouts), the setup report, the reference checkpoint and its card, and the notebooks' plots."""
