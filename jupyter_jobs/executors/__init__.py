"""Where jobs run: `local` (worker processes on this machine) or `dask` (a Dask cluster)."""
