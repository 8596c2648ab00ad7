"""collsim's Hydra launcher for MPI: ``collsim -m ... hydra/launcher=mpi`` under ``mpirun -n R``.

Shipped with collsim; Hydra discovers it in the ``hydra_plugins`` namespace
package.  See :mod:`.mpi_launcher` for how jobs are spread over ranks.
"""
