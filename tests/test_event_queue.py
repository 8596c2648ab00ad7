"""The engine's event queue (collsim/engine/events.pyx: equal-time batches, a chain per later time).

Whatever the structure, the contract is that of a priority queue over the key
(time, tie): every pop and every replaced top is the smallest pending event.
The model here is a sorted Python list driven by the same operations, including
the cases the queue treats apart: pushes at or below the last key served (a chip
delivering at time t sends at time t with a smaller tie than the event just
served), batches of equal times that arrive out of tie order (radix-sorted), and
later times far apart, and many distinct later times at once (the hash table
from time to chain grows and deletes).
"""
from hypothesis import given, settings
from hypothesis import strategies as st

from collsim.engine.events import _queue_ops


def model(ops):
    """What a priority queue must serve for ops (same encoding as _queue_ops)."""
    pending, out, pushed = [], [], 0
    for op in ops:
        if op[0] == "push":
            pending.append((op[1], op[2], pushed))
            pushed += 1
        elif op[0] == "pop":
            pending.sort()
            out.append(pending.pop(0))
        else:
            pending.sort()
            t, k, slot = pending.pop(0)
            out.append((t, k, slot))
            pending.append((op[1], k, slot))
    return out


@st.composite
def op_sequences(draw):
    """Valid operation lists: pop/replace only when something is pending; unique ties.

    Times stay close together (many equal times, as in lockstep collectives) and
    ties span the whole 64-bit range, so keys differ in every bit position.
    """
    n_ops = draw(st.integers(0, 250))
    ties = draw(st.lists(st.integers(0, 2**64 - 1), min_size=n_ops, max_size=n_ops, unique=True))
    # one radix digit of time, a few, all of them (up to INT64_MAX, the top level)
    spread = draw(st.sampled_from([12, 600, 2**20, 2**62, 2**63 - 1]))
    ops, pending = [], 0
    for i in range(n_ops):
        kind = draw(st.sampled_from(["push", "push", "pop", "replace"])) if pending else "push"
        t = draw(st.integers(0, spread))
        if kind == "push":
            ops.append(("push", t, ties[i]))
            pending += 1
        elif kind == "pop":
            ops.append(("pop",))
            pending -= 1
        else:
            ops.append(("replace", t))
    ops += [("pop",)] * pending
    return ops


@settings(max_examples=300, deadline=None)
@given(op_sequences())
def test_queue_serves_the_smallest_key_first(ops):
    assert _queue_ops(ops) == model(ops)


def test_push_below_the_last_key_served_comes_out_next():
    # serve (5, tie 9), then push (5, tie 2): it precedes (5, tie 10) and (7, 0)
    ops = [("push", 5, 9), ("push", 5, 10), ("push", 7, 0), ("pop",), ("push", 5, 2),
           ("pop",), ("pop",), ("pop",)]
    assert _queue_ops(ops) == [(5, 9, 0), (5, 2, 3), (5, 10, 1), (7, 0, 2)]


def test_replace_top_moves_the_message_to_its_next_event():
    # the top (1, tie 4, slot 0) is replaced by time 3: it now comes after (2, tie 8)
    ops = [("push", 1, 4), ("push", 2, 8), ("replace", 3), ("pop",), ("pop",)]
    assert _queue_ops(ops) == [(1, 4, 0), (2, 8, 1), (3, 4, 0)]


def test_many_equal_times_come_out_by_tie():
    ties = [(i * 7919) % 1000 for i in range(1000)]          # a permutation of 0..999
    ops = [("push", 42, k) for k in ties] + [("pop",)] * 1000
    assert [k for _, k, _ in _queue_ops(ops)] == list(range(1000))


def test_a_large_unsorted_batch_is_sorted_on_every_byte_of_the_tie():
    # 5,000 events at one time whose ties differ in all eight bytes: the batch is
    # radix-sorted (more than the insertion-sort cutoff), byte by byte
    ties = [(i * 0x9E3779B97F4A7C15) % 2**64 for i in range(1, 5001)]
    ops = [("push", 1000, k) for k in ties] + [("push", 7, 1), ("pop",)] + [("pop",)] * 5000
    served = _queue_ops(ops)
    assert served[0] == (7, 1, 5000)
    assert [k for _, k, _ in served[1:]] == sorted(ties)
    assert {t for t, _, _ in served[1:]} == {1000}


def test_sends_at_the_current_time_interleave_with_its_batch():
    # serving the batch at t=10 (ties 10, 20, 30), pushes at t=10 land before, between
    # and after what is left of it, and one lands in the past (t=9): all in key order
    ops = [("push", 10, 10), ("push", 10, 20), ("push", 10, 30), ("push", 50, 0), ("pop",),
           ("push", 10, 5), ("push", 10, 25), ("push", 10, 40), ("push", 9, 99)]
    ops += [("pop",)] * 7
    assert [(t, k) for t, k, _ in _queue_ops(ops)] == [
        (10, 10), (9, 99), (10, 5), (10, 20), (10, 25), (10, 30), (10, 40), (50, 0)]


def test_later_times_pushed_out_of_order_come_out_by_time_then_tie():
    # repeated and scrambled times, near and far apart: each time's chain becomes a batch
    times = [301, 4, 70_000, 3, 300, 4, 300, 3]
    ops = [("push", t, 100 - i) for i, t in enumerate(times)] + [("pop",)] * len(times)
    assert [(t, k) for t, k, _ in _queue_ops(ops)] == sorted((t, 100 - i) for i, t in enumerate(times))


def test_times_on_every_bit_boundary_and_near_int64_max():
    # 2^p - 1, 2^p, 2^p + 1 for every bit p: neighbours that differ from each other in a
    # high bit or only in the lowest (the table's hash must spread both), pushed
    # scrambled, with pops in between, up to the largest times
    times = sorted({t for p in range(63) for t in (2**p - 1, 2**p, 2**p + 1)} | {2**63 - 2, 2**63 - 1})
    order = [times[(i * 37) % len(times)] for i in range(len(times))]   # 37 is prime to len
    assert sorted(order) == times
    ops = []
    for i, t in enumerate(order):
        ops.append(("push", t, 1000 - i))
        if i % 5 == 4:
            ops.append(("pop",))
    ops += [("pop",)] * (len(order) - sum(op[0] == "pop" for op in ops))
    assert _queue_ops(ops) == model(ops)


def test_a_time_pushed_again_after_the_origin_moves():
    # the queue remembers the chains of the last two times pushed; after a refill (a
    # new origin) a remembered time that became the origin must join the batch, and
    # one whose chain was emptied must get a new chain
    ops = [("push", 0, 0)]
    for i, t in enumerate((2**24 + 7, 2**24 + 2**13, 2**24 + 5, 2**25, 2**24 + 2**13)):
        ops.append(("push", t, 10 + i))
    for _ in range(3):
        ops += [("pop",), ("push", 2**24 + 2**13, 5000 + len(ops)), ("push", 2**25, 6000 + len(ops)),
                ("replace", 2**24 + 2**13 + 1)]
    ops += [("pop",)] * (len([op for op in ops if op[0] == "push"]) - sum(op[0] == "pop" for op in ops))
    assert _queue_ops(ops) == model(ops)


def test_sends_at_the_current_time_land_anywhere_in_a_large_batch():
    # a batch of 50 at t=1000 (even ties), 6 served: sends at t=1000 land just ahead of
    # the head, a few places in, far behind it, and below what was served, interleaved
    # with more serving, then a replace at the batch's time
    ops = [("push", 1000, 2 * k) for k in range(50)] + [("push", 2000, 1)]
    ops += [("pop",)] * 6
    ops += [("push", 1000, 11), ("push", 1000, 21), ("push", 1000, 77), ("push", 1000, 3),
            ("pop",), ("push", 1000, 13), ("push", 1000, 15), ("replace", 1000), ("pop",),
            ("push", 1000, 99), ("push", 1000, 17)]
    ops += [("pop",)] * (sum(op[0] == "push" for op in ops) - sum(op[0] == "pop" for op in ops))
    assert _queue_ops(ops) == model(ops)


def test_long_lockstep_batches_with_sends_at_the_current_time():
    # larger than the hypothesis cases: batches of hundreds, most served events send
    # at the same time with a random tie (the side heap) or later, a few in the past
    import random
    rng = random.Random(7)
    for _ in range(20):
        ties = rng.sample(range(2**40), 3000)
        ops, pending = [], 0
        for k in range(400):
            ops.append(("push", rng.choice([100, 100, 200, 300]), ties.pop()))
            pending += 1
        while ties and pending:
            r = rng.random()
            if r < 0.45:
                ops.append(("replace", rng.choice([0, 0, 0, 50, 100, 400])))
            elif r < 0.7:
                ops.append(("pop",))
                pending -= 1
            else:
                ops.append(("push", rng.choice([100, 200, 300, 400]), ties.pop()))
                pending += 1
        ops += [("pop",)] * pending
        assert _queue_ops(ops) == model(ops)


def test_large_batches_whose_ties_differ_in_few_bits_are_sorted():
    # lockstep: a batch's messages share their seq and differ in the src bits only
    # (here 1 to 15 differing bits, at the bottom, middle and top of the tie)
    import random
    rng = random.Random(3)
    for bits in (1, 3, 6, 7, 12, 14, 15):
        for low in (0, 20, 64 - bits):
            n = min(2**bits, 300)
            fixed = rng.getrandbits(64) & ~(((1 << bits) - 1) << low)
            srcs = rng.sample(range(2**bits), n)
            ops = [("push", 500, fixed | (s << low)) for s in srcs] + [("push", 1, 0)]
            ops += [("pop",)] * (n + 1)
            assert _queue_ops(ops) == model(ops)


def test_thousands_of_distinct_later_times_at_once():
    # more distinct pending times than the table's first size (it doubles several
    # times), pushed scrambled with repeats and served interleaved with more pushes:
    # entries are deleted from the middle of probe runs as their chains are emptied
    import random
    rng = random.Random(11)
    times = rng.sample(range(1, 2**40), 5000)
    ops, pending, tie = [], 0, 0
    for k, t in enumerate(times):
        for _ in range(rng.choice([1, 1, 2, 3])):
            ops.append(("push", t, tie))
            tie += 1
            pending += 1
        if k % 3 == 2:
            ops.append(("pop",))
            pending -= 1
        if k % 7 == 6:
            ops.append(("replace", t + rng.choice([0, 1, 2**20])))
    ops += [("pop",)] * pending
    assert _queue_ops(ops) == model(ops)


def _home_entry(time, bits=10):
    """The first table entry of a time in the queue's table of 2**bits entries (events.pyx _home)."""
    return ((time * 0x9E3779B97F4A7C15) % 2**64) >> (64 - bits)


def test_colliding_times_are_found_after_deletions():
    # times whose first entries in the (first, 1,024-entry) table coincide or are
    # neighbours, including runs that wrap past the last entry: serving the earliest
    # chain deletes an entry from the middle of a probe run, and every later time must
    # still be found (pushed again) and served in order
    by_home = {}
    for t in range(1, 400_000):
        h = _home_entry(t)
        if h in (1021, 1022, 1023, 0, 1, 500, 501) and len(by_home.setdefault(h, [])) < 6:
            by_home[h].append(t)
    times = sorted(t for group in by_home.values() for t in group)
    assert len(times) == 42
    order = [times[(i * 17) % len(times)] for i in range(len(times))]   # 17 is prime to 42
    ops = [("push", t, 1000 + i) for i, t in enumerate(order)]
    for i, t in enumerate(order):
        ops += [("pop",), ("push", t, 5000 + i)]          # t's chain may be gone or still there
    ops += [("pop",)] * len(order)
    assert _queue_ops(ops) == model(ops)
