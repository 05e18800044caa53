# nbgrader's configuration for the course's exercises (read by `python -m gpt classroom ...`, which copies
# it into the temporary nbgrader course folder it builds; also usable with plain `nbgrader` commands run
# from a course folder). Each chapter notebook NN_name.ipynb is one assignment called NN_name.
c = get_config()  # noqa: F821 (nbgrader provides it)

c.CourseDirectory.course_id = "gpt-course"

# The student version of a solution region.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Autograding runs every cell, keeps going after a failing cell, and interrupts a cell that runs too
# long (`classroom grade --cell-timeout` overrides it). The notebooks' loops are sized by GPT_PROFILE,
# which `classroom grade --profile` sets (ci by default).
c.Execute.timeout = 300
c.Execute.interrupt_on_timeout = True

# Students may not change the graded test cells: autograde puts the source version (hidden tests
# included) back before it runs a submission.
c.LockCells.lock_grade_cells = True
c.LockCells.lock_solution_cells = False
