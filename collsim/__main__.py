"""``python -m collsim`` runs the same Hydra app as the ``collsim`` command."""
from collsim.app import main

main()
