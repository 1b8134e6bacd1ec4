"""Teaching labs: a scenario plus ``lab.yaml`` (story, steps, questions, checks), read, shown,
checked against the tracer's own verdicts, and drawn as a page."""
