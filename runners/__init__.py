"""vcfc.runners: networks and data around the codec core (the top layer).

models (split(): cut a network at a named layer), splits (the Split classes), tasks (what an
output is for), presets, weights, datasets, kinds; image_coding and evaluate (head → code →
tail over a batch); config (experiment files), experiment (run one), rundir (the run folder),
grid/ (resumable task grids), report_extras, where_to_split (split points against the image);
cli/ (the `vcfc` command). See docs/design.md.
"""
