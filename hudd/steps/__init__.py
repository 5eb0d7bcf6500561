"""The HUDD steps. Each reads its inputs from the workspace, computes, writes its outputs and marks
itself done; steps never call each other (the pipeline does) and import nothing from steps/ but common."""
