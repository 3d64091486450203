"""vcfc.results: from per-image rows to what a paper shows: task metrics (metrics, coco), curve
points and BD-rate tables with bootstrap intervals (aggregate, bdrate), plots and the report."""
