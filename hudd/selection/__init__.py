"""Choosing the improvement images to label (Step 4): quotas, single linkage, the ranked assignment."""
