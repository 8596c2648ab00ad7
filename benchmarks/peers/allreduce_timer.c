/*
 * allreduce_timer: times MPI_Allreduce on MPI_FLOAT over a geometric range of sizes.
 *
 *   allreduce_timer MIN_BYTES MAX_BYTES FACTOR [sum|noop]
 *
 * sum (default) reduces with MPI_SUM, so the simulator also performs the real additions on
 * the host; noop reduces with a commutative user operation that does nothing, which leaves
 * the simulated time unchanged (SMPI runs without simulated computation) and shows the cost
 * of the simulation alone.
 * Written for SimGrid SMPI (compile with smpicc, run with smpirun -no-privatize), where
 * MPI_Wtime is the simulated clock; it also builds against any real MPI.  Rank 0 prints one
 * line per size:
 *
 *   ALLREDUCE ranks=16 bytes=1024 count=256 op=sum lr_path=ring time_s=... start_skew_s=... late=0 wall_s=...
 *             cpu_s=...
 *
 * time_s        latest end minus earliest start over all ranks (simulated seconds).
 * start_skew_s  latest start minus earliest start (every rank sleeps to a common start date,
 *               so this is only the rounding of the sleep, at most a nanosecond).
 * late          1 if some rank reached the common start date after it had passed (the guard
 *               was too short); the row is then not comparable.
 * wall_s        host wall-clock seconds rank 0 spent on this size (barrier + start sync +
 *               allreduce + result reduction); under SMPI that is the simulator's cost.
 * cpu_s         host CPU seconds of the whole process over the same span: under SMPI every
 *               rank lives in this one process, so this is the simulator's CPU cost, which
 *               other jobs on the machine do not inflate.
 * lr_path       what SMPI's "lr" (logical ring) allreduce does with this count: "ring" when
 *               ranks divide count, "ring+remainder" when they do not (the remainder goes
 *               through the default allreduce), "reduce+bcast" when count < ranks.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Simulated seconds between rank 0 choosing the common start date and that date: it must
 * cover the broadcast of the date to every rank (about log2(ranks) messages). */
#define START_GUARD_S 0.01

#ifdef SMPI_SHARED_MALLOC
/* One physical copy shared by every rank: 1 GiB per rank would not fit at 1,024 ranks.
 * The payload values are meaningless, only the timing matters. */
#define BUFFER_ALLOC(nbytes) SMPI_SHARED_MALLOC(nbytes)
#define BUFFER_FREE(ptr) SMPI_SHARED_FREE(ptr)
#else
#define BUFFER_ALLOC(nbytes) malloc(nbytes)
#define BUFFER_FREE(ptr) free(ptr)
#endif

static double host_clock_s(clockid_t clock)
{
  struct timespec ts;
  /* The parentheses call libc itself: SMPI's headers turn clock_gettime() into the
   * simulated clock, and here we want the host's. */
  (clock_gettime)(clock, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_until(double date_s)
{
  double wait_s = date_s - MPI_Wtime();
  if (wait_s <= 0.0)
    return;
  struct timespec ts;
  ts.tv_sec  = (time_t)wait_s;
  ts.tv_nsec = (long)((wait_s - (double)ts.tv_sec) * 1e9);
  nanosleep(&ts, NULL); /* simulated under SMPI: costs no host time */
}

static const char* lr_path(long long count, int ranks)
{
  if (count < ranks)
    return "reduce+bcast";
  return count % ranks == 0 ? "ring" : "ring+remainder";
}

/* Reduction that leaves the buffer untouched: the timing is that of MPI_SUM without the
 * host spending time on additions. */
static void noop_reduce(void* in, void* inout, int* len, MPI_Datatype* dtype)
{
  (void)in;
  (void)inout;
  (void)len;
  (void)dtype;
}

static int parse_args(int argc, char** argv, long long* min_bytes, long long* max_bytes, long long* factor,
                      int* noop)
{
  if (argc != 4 && argc != 5)
    return 0;
  *noop = 0;
  if (argc == 5) {
    if (strcmp(argv[4], "noop") == 0)
      *noop = 1;
    else if (strcmp(argv[4], "sum") != 0)
      return 0;
  }
  *min_bytes = atoll(argv[1]);
  *max_bytes = atoll(argv[2]);
  *factor    = atoll(argv[3]);
  if (*min_bytes < (long long)sizeof(float) || *max_bytes < *min_bytes || *factor < 2)
    return 0;
  /* MPI counts are int: at most 2^31 - 1 floats. */
  return *max_bytes / (long long)sizeof(float) <= 2147483647LL;
}

/* One size: common start date, one allreduce, times gathered on rank 0. */
static void time_one_size(long long nbytes, void* sbuf, void* rbuf, MPI_Op op, const char* op_name, int rank,
                          int ranks)
{
  int count = (int)(nbytes / (long long)sizeof(float));
  MPI_Barrier(MPI_COMM_WORLD);
  double wall0_s = host_clock_s(CLOCK_MONOTONIC);
  double cpu0_s  = host_clock_s(CLOCK_PROCESS_CPUTIME_ID);

  double start_date_s = 0.0;
  if (rank == 0)
    start_date_s = MPI_Wtime() + START_GUARD_S;
  MPI_Bcast(&start_date_s, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  double late = MPI_Wtime() > start_date_s ? 1.0 : 0.0;
  sleep_until(start_date_s);

  double t0_s = MPI_Wtime();
  MPI_Allreduce(sbuf, rbuf, count, MPI_FLOAT, op, MPI_COMM_WORLD);
  double t1_s = MPI_Wtime();

  /* One max-reduction gives: earliest start (as -max(-t0)), latest start, latest end, late. */
  double mine[4] = {-t0_s, t0_s, t1_s, late};
  double most[4];
  MPI_Reduce(mine, most, 4, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
  double wall1_s = host_clock_s(CLOCK_MONOTONIC);
  double cpu1_s  = host_clock_s(CLOCK_PROCESS_CPUTIME_ID);
  if (rank == 0) {
    double first_start_s = -most[0];
    printf("ALLREDUCE ranks=%d bytes=%lld count=%d op=%s lr_path=%s time_s=%.17g start_skew_s=%.17g late=%d wall_s=%.6f cpu_s=%.6f\n",
           ranks, nbytes, count, op_name, lr_path(count, ranks), most[2] - first_start_s, most[1] - first_start_s,
           (int)most[3], wall1_s - wall0_s, cpu1_s - cpu0_s);
    fflush(stdout);
  }
}

int main(int argc, char** argv)
{
  MPI_Init(&argc, &argv);
  int rank, ranks;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks);

  long long min_bytes, max_bytes, factor;
  int noop;
  if (!parse_args(argc, argv, &min_bytes, &max_bytes, &factor, &noop)) {
    if (rank == 0)
      fprintf(stderr, "usage: allreduce_timer MIN_BYTES MAX_BYTES FACTOR [sum|noop] (bytes >= 4, FACTOR >= 2)\n");
    MPI_Finalize();
    return 2;
  }
  MPI_Op op = MPI_SUM;
  if (noop)
    MPI_Op_create(noop_reduce, 1, &op);
  void* sbuf = BUFFER_ALLOC((size_t)max_bytes);
  void* rbuf = BUFFER_ALLOC((size_t)max_bytes);
  if (rank == 0) {
    printf("# allreduce_timer: MPI_Allreduce MPI_FLOAT %s, ranks=%d, one call per size, "
           "time = latest end - earliest start (MPI_Wtime)\n",
           noop ? "noop (user op, does nothing)" : "MPI_SUM", ranks);
    fflush(stdout);
  }
  for (long long nbytes = min_bytes; nbytes <= max_bytes; nbytes *= factor)
    time_one_size(nbytes - nbytes % (long long)sizeof(float), sbuf, rbuf, op, noop ? "noop" : "sum", rank, ranks);
  if (noop)
    MPI_Op_free(&op);

  BUFFER_FREE(sbuf);
  BUFFER_FREE(rbuf);
  MPI_Finalize();
  return 0;
}
