"""collsim: simulator of collective communication on large accelerator clusters."""
import os

# collsim uses numpy for arrays, never for linear algebra, and runs one process per
# core under MPI: OpenBLAS's worker threads only spin (1-1.5% of a run's samples
# in perf) and compete with the ranks.  Set before numpy is first imported; a
# value chosen by the user wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
