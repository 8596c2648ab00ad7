"""Side-by-side benchmark of collsim against SimGrid SMPI (``make bench-peers``).

Modules:
  smpi_platform  the flat cluster both simulators see: SimGrid platform XML + hostfile,
                 the SMPI options, and the equivalent collsim topology YAML (pure Python)
  smpi_run       install SimGrid when missing, compile allreduce_timer.c, run smpirun,
                 parse the program's output
  collsim_run    run the real ``collsim`` command on the equivalent cluster, read results.csv
  compare        join both sides, the hand formula, tables (Markdown, CSV)
  measure        run one command and report its wall time and peak memory (wait4)
"""
