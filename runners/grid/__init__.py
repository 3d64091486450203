"""Running a grid of tasks, resumably: run_grid (the loop, progress, Ctrl-C), executors (serial,
local process pool, Dask), worker (what runs inside a worker process), rows (the crash-safe row
store) and budget (each worker's share of the cores). Import from the modules."""
