"""Root-cause clustering (Step 1b): distances, Ward with the WICD knee, feature clustering and the space it was made in."""
